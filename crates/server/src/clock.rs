//! The server's clock. Live mode reads the system clock; sandbox mode adds an offset that
//! `POST /v1/simulate/clock/advance` moves forward, kept in the database so restarts keep it.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Default)]
pub struct Clock {
    /// Microseconds added to the system clock (sandbox only; never negative).
    offset_micros: AtomicI64,
}

impl Clock {
    pub fn with_offset(offset_micros: i64) -> Clock {
        Clock { offset_micros: AtomicI64::new(offset_micros) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::microseconds(self.offset_micros.load(Ordering::SeqCst))
    }

    pub fn offset_micros(&self) -> i64 {
        self.offset_micros.load(Ordering::SeqCst)
    }

    /// Moves the clock forward; returns the new offset.
    pub fn advance(&self, by: Duration) -> i64 {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::SeqCst).saturating_add(micros)
    }
}
