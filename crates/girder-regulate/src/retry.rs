//! todo
/// todo
pub struct Retry;
