//! A token bucket for a queue's lease rate: `rate` jobs a second, bursts up to one second's
//! worth. Hand-written rather than governor's because a lease must give back the tokens of
//! jobs it did not find (governor cannot refund).

use std::time::{Duration, Instant};

/// Tokens for leasing jobs.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens a second.
    pub fn new(rate: f64, now: Instant) -> TokenBucket {
        let rate = rate.max(1.0);
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    /// Takes up to `want` tokens; when none is there, also says how long until one is.
    pub fn take(&mut self, want: usize, now: Instant) -> (usize, Option<Duration>) {
        self.refill(now);
        let got = (self.tokens.floor() as usize).min(want);
        self.tokens -= got as f64;
        if got > 0 || want == 0 {
            return (got, None);
        }
        let wait = (1.0 - self.tokens) / self.rate;
        (0, Some(Duration::from_secs_f64(wait.clamp(0.001, 1.0))))
    }

    /// Gives back tokens taken for jobs that were not there.
    pub fn refund(&mut self, unused: usize) {
        self.tokens = (self.tokens + unused as f64).min(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_refills_and_refunds() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, start);
        assert_eq!(bucket.take(4, start).0, 4);
        assert_eq!(bucket.take(100, start).0, 6);
        let (none, wait) = bucket.take(1, start);
        assert_eq!(none, 0);
        assert!(wait.is_some_and(|w| w <= Duration::from_millis(101)));
        // A tenth of a second later, one more token.
        assert_eq!(bucket.take(5, start + Duration::from_millis(100)).0, 1);
        bucket.refund(3);
        assert_eq!(bucket.take(5, start + Duration::from_millis(100)).0, 3);
    }
}
