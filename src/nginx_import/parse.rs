//! nginx's configuration syntax: a port of its tokenizer (`ngx_conf_read_token`,
//! `src/core/ngx_conf_file.c`) and of `include` (`ngx_conf_include`), building a tree of
//! directives that remembers where each word was written.
//!
//! The tokenizer's rules: words are separated by spaces, tabs, CR and LF and end a directive
//! at `;` or open a block at `{`; a `}` closes a block only where a new word could start
//! (`a}` is one word); `#` starts a comment only there too; a word starting with `"` or `'`
//! runs to the matching quote and must be followed by a separator (or `)`); `\` escapes the
//! next character for the tokenizer, and in the word `\"`, `\'`, `\\` lose the backslash and
//! `\t`, `\r`, `\n` become the control characters, any other `\x` stays as it is; `${` does
//! not open a block.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::glob;
use super::ImportError;

/// How deep includes may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// One word of a directive, unquoted and unescaped, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub line: usize,
}

/// A directive: its name and arguments, its block if it has one, and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Directive {
    pub name: String,
    pub args: Vec<Word>,
    pub block: Option<Vec<Directive>>,
    pub file: Arc<Path>,
    pub line: usize,
}

impl Directive {
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(|w| w.text.as_str())
    }

    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Reads `main` and every file it includes into one tree (includes spliced in place).
pub(crate) fn parse_main(main: &Path) -> Result<Vec<Directive>, ImportError> {
    // nginx resolves relative includes against the directory of the main config file
    // (`cycle->conf_prefix`), whichever file the include is written in.
    let prefix = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut parser = Parser { prefix, depth: 0 };
    parser.file(main)
}

/// Parses `text` as if read from a file named `name` in the current directory.
#[cfg(test)]
pub(crate) fn parse_text(text: &str, name: &str) -> Result<Vec<Directive>, ImportError> {
    let mut parser = Parser {
        prefix: PathBuf::from("."),
        depth: 0,
    };
    parser.text(text.as_bytes(), &Arc::from(Path::new(name)))
}

struct Parser {
    prefix: PathBuf,
    depth: usize,
}

enum Token {
    /// Words ended by `;`.
    Directive(Vec<Word>),
    /// Words ended by `{`.
    BlockStart(Vec<Word>),
    BlockEnd,
    Eof,
}

impl Parser {
    fn file(&mut self, path: &Path) -> Result<Vec<Directive>, ImportError> {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.text(&bytes, &Arc::from(path))
    }

    fn text(&mut self, bytes: &[u8], file: &Arc<Path>) -> Result<Vec<Directive>, ImportError> {
        let mut lexer = Lexer {
            buf: bytes,
            pos: 0,
            line: 1,
            file: file.clone(),
        };
        self.block(&mut lexer, true)
    }

    fn block(&mut self, lexer: &mut Lexer<'_>, top: bool) -> Result<Vec<Directive>, ImportError> {
        let mut out = Vec::new();
        loop {
            let (words, has_block) = match lexer.next()? {
                Token::Eof if top => return Ok(out),
                Token::Eof => return Err(lexer.error("unexpected end of file, expecting \"}\"")),
                Token::BlockEnd if top => return Err(lexer.error("unexpected \"}\"")),
                Token::BlockEnd => return Ok(out),
                Token::Directive(words) => (words, false),
                Token::BlockStart(words) => (words, true),
            };
            let mut words = words.into_iter();
            let Some(name) = words.next() else {
                continue;
            };
            let args: Vec<Word> = words.collect();
            if name.text == "include" {
                if has_block || args.len() != 1 {
                    return Err(ImportError::Syntax {
                        file: lexer.file.to_path_buf(),
                        line: name.line,
                        message: "\"include\" takes exactly one file or pattern".into(),
                    });
                }
                out.extend(self.include(&args[0], &lexer.file)?);
                continue;
            }
            let block = if has_block {
                Some(self.block(lexer, false)?)
            } else {
                None
            };
            out.push(Directive {
                name: name.text,
                args,
                block,
                file: lexer.file.clone(),
                line: name.line,
            });
        }
    }

    fn include(&mut self, what: &Word, from: &Path) -> Result<Vec<Directive>, ImportError> {
        let at = |message: String| ImportError::Syntax {
            file: from.to_path_buf(),
            line: what.line,
            message,
        };
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(at(format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} (does a file include itself?)"
            )));
        }
        let path = self.prefix.join(&what.text);
        let files = if glob::is_pattern(&what.text) {
            glob::expand(&path).map_err(|e| at(format!("include {:?}: {e}", what.text)))?
        } else {
            vec![path]
        };
        self.depth += 1;
        let mut out = Vec::new();
        for file in files {
            match self.file(&file) {
                Ok(directives) => out.extend(directives),
                Err(e) => {
                    self.depth -= 1;
                    return Err(e);
                }
            }
        }
        self.depth -= 1;
        Ok(out)
    }
}

struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
    file: Arc<Path>,
}

impl Lexer<'_> {
    fn error(&self, message: &str) -> ImportError {
        ImportError::Syntax {
            file: self.file.to_path_buf(),
            line: self.line,
            message: message.to_string(),
        }
    }

    /// The next directive, block start or block end (`ngx_conf_read_token`).
    fn next(&mut self) -> Result<Token, ImportError> {
        let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
        let mut words: Vec<Word> = Vec::new();
        let (mut need_space, mut last_space, mut sharp_comment) = (false, true, false);
        let (mut variable, mut quoted, mut s_quoted, mut d_quoted) = (false, false, false, false);
        let (mut start, mut start_line) = (self.pos, self.line);
        loop {
            let Some(&ch) = self.buf.get(self.pos) else {
                if !words.is_empty() || !last_space {
                    return Err(self.error("unexpected end of file, expecting \";\" or \"}\""));
                }
                return Ok(Token::Eof);
            };
            self.pos += 1;
            if ch == b'\n' {
                self.line += 1;
                sharp_comment = false;
                // (a comment ends here; the LF itself is then a separator)
            } else if sharp_comment {
                continue;
            }
            if quoted {
                quoted = false;
                continue;
            }
            if need_space {
                if is_space(ch) {
                    last_space = true;
                    need_space = false;
                    continue;
                }
                match ch {
                    b';' => return Ok(Token::Directive(words)),
                    b'{' => return Ok(Token::BlockStart(words)),
                    b')' => {
                        last_space = true;
                        need_space = false;
                    }
                    _ => return Err(self.error(&format!("unexpected \"{}\"", ch as char))),
                }
            }
            if last_space {
                start = self.pos - 1;
                start_line = self.line;
                if is_space(ch) {
                    continue;
                }
                match ch {
                    b';' | b'{' => {
                        if words.is_empty() {
                            return Err(self.error(&format!("unexpected \"{}\"", ch as char)));
                        }
                        return Ok(if ch == b'{' {
                            Token::BlockStart(words)
                        } else {
                            Token::Directive(words)
                        });
                    }
                    b'}' => {
                        if !words.is_empty() {
                            return Err(self.error("unexpected \"}\""));
                        }
                        return Ok(Token::BlockEnd);
                    }
                    b'#' => sharp_comment = true,
                    b'\\' => {
                        quoted = true;
                        last_space = false;
                    }
                    b'"' | b'\'' => {
                        start += 1;
                        d_quoted = ch == b'"';
                        s_quoted = ch == b'\'';
                        last_space = false;
                    }
                    b'$' => {
                        variable = true;
                        last_space = false;
                    }
                    _ => last_space = false,
                }
                continue;
            }
            if ch == b'{' && variable {
                continue;
            }
            variable = false;
            if ch == b'\\' {
                quoted = true;
                continue;
            }
            if ch == b'$' {
                variable = true;
                continue;
            }
            let found = if d_quoted {
                let end = ch == b'"';
                if end {
                    d_quoted = false;
                    need_space = true;
                }
                end
            } else if s_quoted {
                let end = ch == b'\'';
                if end {
                    s_quoted = false;
                    need_space = true;
                }
                end
            } else if is_space(ch) || ch == b';' || ch == b'{' {
                last_space = true;
                true
            } else {
                false
            };
            if found {
                words.push(Word {
                    text: unescape(&self.buf[start..self.pos - 1]),
                    line: start_line,
                });
                if !need_space {
                    match ch {
                        b';' => return Ok(Token::Directive(words)),
                        b'{' => return Ok(Token::BlockStart(words)),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// A word's text as nginx stores it: `\"`, `\'`, `\\` lose the backslash, `\t`, `\r`, `\n`
/// become control characters, any other backslash stays.
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            match raw.get(i + 1) {
                Some(b'"' | b'\'' | b'\\') => i += 1,
                Some(b't') => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                Some(b'r') => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                Some(b'n') => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
