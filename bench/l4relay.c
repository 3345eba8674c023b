// A layer-4 relay for bench/uring.sh: each client connection is paired with one backend
// connection (round robin) and bytes pass through unparsed, like the l4-floor in compare.sh.
// The same relay runs in one of two I/O modes, so the difference between them is the I/O model
// alone: "epoll" (readiness, then recv and send: the model of ringproxy, nginx and HAProxy) or
// "uring" (io_uring: a recv kept armed on every socket, each completion answered by a send
// linked to the next recv, all submitted and reaped with one io_uring_enter per batch), or
// "hosted" (the same ring, but waited on through epoll and an eventfd, as a ring hosted in an
// epoll event loop such as tokio's would be: an epoll_wait and an io_uring_enter per batch).
//
//   gcc -O2 -o l4relay bench/l4relay.c -luring -lpthread     # needs liburing-dev
//   l4relay epoll|uring|hosted PORT THREADS BACKEND_PORT...  # listens on 127.0.0.1:PORT
//
// One acceptor thread hands connections to the worker threads in turn (an even split); each
// worker owns its sockets. Not a proxy: no parsing, no routing, no timeouts. Loopback only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define MAXFD 65536

// Per socket: its pair, and (uring mode) its buffer and whether a recv chain is in flight.
struct sock {
    int peer;
    int armed;   // uring: a send-then-recv chain or a recv is in flight on this socket
    int closing; // the pair is shutting down; close both once neither is armed
    uint32_t gen; // epoll: which connection the fd number is now, so a stale event is dropped
    char *buf;
};
static struct sock socks[MAXFD];

struct worker {
    int handoff_r, handoff_w;
    pthread_t thread;
};

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void send_all(int fd, const char *p, ssize_t n) {
    while (n > 0) {
        ssize_t s = send(fd, p, n, MSG_NOSIGNAL);
        if (s < 0 && errno == EAGAIN)
            continue; // loopback and small messages: the send buffer drains at once
        if (s <= 0)
            return;
        p += s;
        n -= s;
    }
}

static void *epoll_worker(void *arg) {
    struct worker *w = arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint32_t)w->handoff_r};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, w->handoff_r, &ev))
        die("epoll");
    struct epoll_event evs[256];
    static __thread char buf[BUF];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = (int)(evs[i].data.u64 & 0xffffffff);
            if (evs[i].data.u64 == (uint32_t)w->handoff_r) {
                int pair[2];
                if (read(fd, pair, sizeof pair) != sizeof pair)
                    continue;
                for (int k = 0; k < 2; k++) {
                    uint64_t tag = (uint64_t)socks[pair[k]].gen << 32 | (uint32_t)pair[k];
                    struct epoll_event e = {.events = EPOLLIN, .data.u64 = tag};
                    epoll_ctl(ep, EPOLL_CTL_ADD, pair[k], &e);
                }
                continue;
            }
            fd = (int)(evs[i].data.u64 & 0xffffffff);
            if ((uint32_t)(evs[i].data.u64 >> 32) != socks[fd].gen)
                continue; // closed earlier in this batch (and maybe reused since)
            ssize_t r = recv(fd, buf, BUF, 0);
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r <= 0) {
                int peer = socks[fd].peer;
                socks[fd].gen++;
                socks[peer].gen++;
                close(peer); // closing removes both from the epoll set
                close(fd);
                continue;
            }
            send_all(socks[fd].peer, buf, r);
        }
    }
    return NULL;
}

enum { OP_RECV = 1, OP_SEND = 2, OP_HANDOFF = 3 };

static struct io_uring_sqe *sqe_of(struct io_uring *ring) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) { // the queue is full: submit what is there and take a fresh entry
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

static void arm_recv(struct io_uring *ring, int fd) {
    struct io_uring_sqe *sqe = sqe_of(ring);
    io_uring_prep_recv(sqe, fd, socks[fd].buf, BUF, 0);
    sqe->user_data = ((uint64_t)OP_RECV << 32) | (uint32_t)fd;
    socks[fd].armed = 1;
}

// Starts closing the pair of `fd`: shutting both down completes any recv still armed.
static void close_pair(int fd) {
    int peer = socks[fd].peer;
    if (!socks[fd].closing) {
        socks[fd].closing = socks[peer].closing = 1;
        shutdown(fd, SHUT_RDWR);
        shutdown(peer, SHUT_RDWR);
    }
    if (!socks[fd].armed && !socks[peer].armed) {
        close(fd);
        close(peer);
    }
}

static int hosted;

static void *uring_worker(void *arg) {
    struct worker *w = arg;
    struct io_uring ring;
    struct io_uring_params params = {0};
    // One thread submits and reaps; completions' work runs when it asks for events.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    // Hosted, completion work must run without the loop asking (it sleeps in epoll_wait, not
    // in io_uring_enter), so the kernel's default: it interrupts the thread to run it, and the
    // completions then signal the eventfd.
    if (hosted)
        params.flags = IORING_SETUP_SINGLE_ISSUER;
    int rc = io_uring_queue_init_params(1024, &ring, &params);
    if (rc < 0) {
        errno = -rc;
        die("io_uring_queue_init_params");
    }
    // "hosted": the ring as an event loop built on epoll would host it (tokio's, say): the
    // ring signals an eventfd when completions are posted, the loop sleeps in epoll_wait,
    // reaps, and submits with io_uring_enter.
    int ep = -1;
    if (hosted) {
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
        if (efd < 0 || io_uring_register_eventfd(&ring, efd) || (ep = epoll_create1(0)) < 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
            die("hosted ring");
    }
    int pair[2];
    struct io_uring_sqe *sqe = sqe_of(&ring);
    io_uring_prep_read(sqe, w->handoff_r, pair, sizeof pair, 0);
    sqe->user_data = (uint64_t)OP_HANDOFF << 32;
    for (;;) {
        if (hosted) {
            io_uring_submit(&ring);
            if (!io_uring_cq_ready(&ring)) {
                struct epoll_event ev;
                epoll_wait(ep, &ev, 1, -1);
                continue;
            }
        } else {
            io_uring_submit_and_wait(&ring, 1);
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            unsigned op = cqe->user_data >> 32;
            int fd = (int)(cqe->user_data & 0xffffffff);
            int res = cqe->res;
            if (op == OP_HANDOFF) {
                if (res == sizeof pair) {
                    for (int k = 0; k < 2; k++) {
                        if (!socks[pair[k]].buf && !(socks[pair[k]].buf = malloc(BUF)))
                            die("malloc");
                        arm_recv(&ring, pair[k]);
                    }
                }
                sqe = sqe_of(&ring);
                io_uring_prep_read(sqe, w->handoff_r, pair, sizeof pair, 0);
                sqe->user_data = (uint64_t)OP_HANDOFF << 32;
            } else if (op == OP_RECV) {
                socks[fd].armed = 0;
                if (res <= 0 || socks[fd].closing) {
                    close_pair(fd);
                    continue;
                }
                // The send, then the next recv into the same buffer once the send is done. A
                // send that succeeds posts nothing; one that fails cancels the recv, whose
                // completion then closes the pair.
                sqe = sqe_of(&ring);
                io_uring_prep_send(sqe, socks[fd].peer, socks[fd].buf, res, MSG_NOSIGNAL | MSG_WAITALL);
                sqe->user_data = ((uint64_t)OP_SEND << 32) | (uint32_t)fd;
                sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
                arm_recv(&ring, fd);
            }
            // OP_SEND completions are failures only; the cancelled recv after them closes.
        }
        io_uring_cq_advance(&ring, seen);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5 || (strcmp(argv[1], "epoll") && strcmp(argv[1], "uring") && strcmp(argv[1], "hosted"))) {
        fprintf(stderr, "usage: l4relay epoll|uring|hosted PORT THREADS BACKEND_PORT...\n");
        return 2;
    }
    hosted = strcmp(argv[1], "hosted") == 0;
    int uring = hosted || strcmp(argv[1], "uring") == 0;
    int port = atoi(argv[2]), threads = atoi(argv[3]), backends = argc - 4;
    if (threads < 1)
        threads = 1;
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(listener, (void *)&addr, sizeof addr) || listen(listener, 1024))
        die("listen");
    struct worker *workers = calloc(threads, sizeof *workers);
    for (int i = 0; i < threads; i++) {
        int fds[2];
        if (pipe(fds))
            die("pipe");
        workers[i].handoff_r = fds[0];
        workers[i].handoff_w = fds[1];
        if (pthread_create(&workers[i].thread, NULL, uring ? uring_worker : epoll_worker, &workers[i]))
            die("pthread_create");
    }
    for (unsigned long n = 0;; n++) {
        // epoll mode reads until EAGAIN; uring mode's recv waits in the kernel instead.
        int client = accept4(listener, NULL, NULL, uring ? 0 : SOCK_NONBLOCK);
        if (client < 0)
            continue;
        int backend = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4 + n % backends]))};
        inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
        if (backend < 0 || connect(backend, (void *)&to, sizeof to) || client >= MAXFD || backend >= MAXFD) {
            close(client);
            if (backend >= 0)
                close(backend);
            continue;
        }
        if (!uring)
            ioctl(backend, FIONBIO, &one);
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        socks[client] = (struct sock){.peer = backend, .buf = socks[client].buf, .gen = socks[client].gen};
        socks[backend] = (struct sock){.peer = client, .buf = socks[backend].buf, .gen = socks[backend].gen};
        int pair[2] = {client, backend};
        if (write(workers[n % threads].handoff_w, pair, sizeof pair) != sizeof pair)
            die("handoff");
    }
}
