//! todo
/// todo
pub struct Dedup;
