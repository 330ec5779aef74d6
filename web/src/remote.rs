//! A value the page asks the server for on demand (a card's explanation, the stats): not
//! asked yet, on its way, in, or failed. Every request gets a ticket; only the answer to the
//! latest one lands, so a slow answer never overwrites a newer one.

#[derive(Clone, Debug, PartialEq)]
pub enum Remote<T> {
    Idle,
    Loading,
    Ready(T),
    /// What went wrong, as the page tells it (the gRPC status message).
    Failed(String),
}

/// Names one request of a [`Fetch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchTicket(u64);

#[derive(Clone, Debug, PartialEq)]
pub struct Fetch<T> {
    state: Remote<T>,
    latest: u64,
}

impl<T> Default for Fetch<T> {
    fn default() -> Fetch<T> {
        Fetch { state: Remote::Idle, latest: 0 }
    }
}

impl<T> Fetch<T> {
    pub fn state(&self) -> &Remote<T> {
        &self.state
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.state, Remote::Loading)
    }

    /// Starts a request; what was there before is dropped.
    pub fn start(&mut self) -> FetchTicket {
        self.latest += 1;
        self.state = Remote::Loading;
        FetchTicket(self.latest)
    }

    /// Lands the answer to `ticket`, unless a newer request started or the fetch was reset
    /// since. Returns whether it landed.
    pub fn finish<E: ToString>(&mut self, ticket: FetchTicket, answer: Result<T, E>) -> bool {
        if ticket.0 != self.latest {
            return false;
        }
        self.state = match answer {
            Ok(value) => Remote::Ready(value),
            Err(err) => Remote::Failed(err.to_string()),
        };
        true
    }

    /// Back to [`Remote::Idle`]; answers in flight are dropped.
    pub fn reset(&mut self) {
        self.latest += 1;
        self.state = Remote::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_lands_once_asked() {
        let mut fetch = Fetch::<u32>::default();
        assert_eq!(fetch.state(), &Remote::Idle);
        let ticket = fetch.start();
        assert!(fetch.is_loading());
        assert!(fetch.finish(ticket, Ok::<_, String>(7)));
        assert_eq!(fetch.state(), &Remote::Ready(7));
        assert!(!fetch.is_loading());
    }

    #[test]
    fn a_failure_keeps_its_message() {
        let mut fetch = Fetch::<u32>::default();
        let ticket = fetch.start();
        assert!(fetch.finish(ticket, Err("unimplemented (Unimplemented)")));
        assert_eq!(fetch.state(), &Remote::Failed("unimplemented (Unimplemented)".into()));
    }

    #[test]
    fn only_the_latest_request_lands() {
        let mut fetch = Fetch::<u32>::default();
        let first = fetch.start();
        let second = fetch.start();
        assert!(!fetch.finish(first, Ok::<_, String>(1)));
        assert!(fetch.is_loading());
        assert!(fetch.finish(second, Ok::<_, String>(2)));
        assert!(!fetch.finish(first, Ok::<_, String>(1)));
        assert_eq!(fetch.state(), &Remote::Ready(2));
    }

    #[test]
    fn a_reset_drops_answers_in_flight() {
        let mut fetch = Fetch::<u32>::default();
        let ticket = fetch.start();
        fetch.reset();
        assert!(!fetch.finish(ticket, Ok::<_, String>(1)));
        assert_eq!(fetch.state(), &Remote::Idle);
    }
}
