//! What the consensus tests share.

use std::sync::{Arc, Mutex};

use meniscus_consensus::{ApplyError, StateMachine};

/// Every entry a replica applied, in order.
pub type Applied = Arc<Mutex<Vec<Vec<u8>>>>;

/// A state machine that only records what it applies.
#[derive(Clone, Default)]
pub struct Recorder(pub Applied);

impl StateMachine for Recorder {
    type Output = ();
    fn apply(&mut self, _index: u64, data: &[u8]) -> Result<(), ApplyError> {
        self.0.lock().unwrap().push(data.to_vec());
        Ok(())
    }
}
