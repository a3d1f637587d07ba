//! Modbus TCP: tokio-modbus's client over a TCP connection. The MBAP header's transaction
//! id tells a late answer from the current one, so none of the RTU framing is needed.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{Request, Response, Slave};

use super::BusError;
use crate::config::{Timing, UnitId};
use crate::stats::BusStats;

/// A connection to a Modbus TCP server.
pub struct TcpLink {
    context: Context,
    stats: Arc<BusStats>,
}

impl std::fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpLink").finish_non_exhaustive()
    }
}

impl TcpLink {
    pub fn new(stream: TcpStream, stats: Arc<BusStats>) -> TcpLink {
        TcpLink {
            context: tokio_modbus::client::tcp::attach(stream),
            stats,
        }
    }

    /// One request with a timeout, and up to `retries` retries.
    pub async fn transact(
        &mut self,
        unit: UnitId,
        request: &Request<'_>,
        timing: Timing,
        retries: u32,
    ) -> Result<Response, BusError> {
        self.context.set_slave(Slave(unit.get()));
        let mut retries = super::Retries::new(unit, retries);
        loop {
            let started = Instant::now();
            let call = tokio::time::timeout(timing.timeout, self.context.call(request.clone()));
            let result = match call.await {
                Ok(Ok(Ok(response))) => Ok(response),
                Ok(Ok(Err(exception))) => Err(BusError::Exception(exception)),
                // A header that does not match answers an earlier request that timed out:
                // dropped, and the request asked again.
                Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(BusError::BadFrame(e.to_string())),
                Ok(Err(tokio_modbus::Error::Transport(e))) => {
                    Err(BusError::PortDown(e.to_string()))
                }
                Err(_elapsed) => Err(BusError::Timeout(timing.timeout)),
            };
            let took = started.elapsed();
            self.stats
                .record(unit.get(), took, took, result.as_ref().map(drop));
            if !retries.again(&result) {
                return result;
            }
        }
    }
}
