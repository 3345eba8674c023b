pub mod node;
pub mod ring;
