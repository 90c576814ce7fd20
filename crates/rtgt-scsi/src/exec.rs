//! Command admission and execution (placeholder until the core lands).

use std::sync::Arc;

use crate::fabric::{Command, ExecOutcome, Nexus, Prepared, Response, TmfFunction, TmfResult};

pub(crate) struct PreparedInner {}

impl PreparedInner {
    pub fn data_out_len(&self) -> u32 {
        todo!()
    }
    pub async fn execute(self, _data_out: Vec<u8>) -> ExecOutcome {
        todo!()
    }
}

pub(crate) fn prepare(_nexus: &Arc<Nexus>, _cmd: Command) -> Result<Prepared, Response> {
    todo!()
}

pub(crate) async fn task_management(_nexus: &Arc<Nexus>, _f: TmfFunction) -> TmfResult {
    todo!()
}

pub(crate) fn nexus_lost(_nexus: &Arc<Nexus>) {}
