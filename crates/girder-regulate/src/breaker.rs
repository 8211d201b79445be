//! todo
/// todo
pub struct Breaker;
