//! A batch's JSON body, written one enriched event at a time.
//!
//! The shipper serialises each [`ClickEventRef`] straight into the bytes it will POST (and spool),
//! instead of collecting owned events and serialising the batch afterwards: no string is allocated
//! and freed per field per click. The events come first and the batch id last
//! (`{"events":[…],"batchId":…,"proxyId":…}`), because the id is drawn when the batch is cut;
//! JSON objects are unordered, so this is the same [`sling_shared::clicks::ClickBatch`].

use sling_shared::clicks::ClickEventRef;

use super::BatchIds;
use super::spool::EncodedBatch;

/// Bytes reserved per event up front (a typical event serialises to 140–220).
const BYTES_PER_EVENT: usize = 192;
const OPEN: &[u8] = b"{\"events\":[";

/// Events written so far, as the start of a batch body.
#[derive(Debug)]
pub(crate) struct BatchBody {
    json: Vec<u8>,
    events: usize,
}

impl BatchBody {
    /// An empty body with room for `events` events.
    pub(crate) fn with_capacity(events: usize) -> Self {
        let mut json = Vec::with_capacity(OPEN.len() + events.saturating_mul(BYTES_PER_EVENT));
        json.extend_from_slice(OPEN);
        Self { json, events: 0 }
    }

    /// An empty body for clicks taken off a queue holding `queued`: room for those, at least one,
    /// at most a batch (the overflow paths mostly wake for a few clicks).
    pub(crate) fn for_queued(queued: usize, batch_size: usize) -> Self {
        Self::with_capacity(queued.clamp(1, batch_size.max(1)))
    }

    pub(crate) fn push(&mut self, event: &ClickEventRef<'_>) {
        let start = self.json.len();
        if self.events > 0 {
            self.json.push(b',');
        }
        // Strings, numbers and booleans into a Vec: serde_json cannot fail here. Should it ever,
        // the half-written event is cut off again and the click counted as lost, never as sent.
        if let Err(error) = serde_json::to_writer(&mut self.json, event) {
            self.json.truncate(start);
            tracing::error!(%error, "cannot encode a click event; lost");
            return;
        }
        self.events += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.events
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Closes the body under a new batch id.
    pub(crate) fn finish(mut self, ids: &BatchIds) -> EncodedBatch {
        let batch_id = ids.next();
        self.json.extend_from_slice(b"],\"batchId\":");
        // Ids and proxy names are plain strings: serialising them into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.json, &batch_id);
        self.json.extend_from_slice(b",\"proxyId\":");
        let _ = serde_json::to_writer(&mut self.json, ids.proxy_id());
        self.json.push(b'}');
        EncodedBatch {
            batch_id,
            events: self.events,
            body: bytes::Bytes::from(self.json),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sling_shared::clicks::ClickBatch;

    use super::*;

    fn event<'a>(link_id: &'a str, referrer_host: Option<&'static str>) -> ClickEventRef<'a> {
        ClickEventRef {
            link_id,
            at_ms: 1_700_000_000_000,
            country: Some("DE"),
            device: "desktop",
            browser: "Firefox",
            os: "Linux",
            bot: false,
            referrer_host,
            visitor: "0123456789abcdef0123456789abcdef",
            qr: false,
        }
    }

    #[test]
    fn parses_as_the_batch_it_encodes() {
        let ids = BatchIds::new("proxy \"a\"");
        for n in [0, 1, 3] {
            let mut body = BatchBody::with_capacity(2);
            let names: Vec<String> = (0..n).map(|i| format!("lnk_{i}")).collect();
            for (i, name) in names.iter().enumerate() {
                body.push(&event(name, (i % 2 == 1).then_some("t.co")));
            }
            assert_eq!(body.len(), n);
            assert_eq!(body.is_empty(), n == 0);
            let encoded = body.finish(&ids);
            let batch: ClickBatch = serde_json::from_slice(&encoded.body).unwrap();
            assert_eq!(batch.batch_id, encoded.batch_id);
            assert_eq!(batch.proxy_id, "proxy \"a\"");
            assert_eq!(encoded.events, n);
            let want: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(i, name)| event(name, (i % 2 == 1).then_some("t.co")).to_owned_event())
                .collect();
            assert_eq!(batch.events, want);
        }
        // Every batch gets its own id.
        let a = BatchBody::with_capacity(1).finish(&ids);
        let b = BatchBody::with_capacity(1).finish(&ids);
        assert_ne!(a.batch_id, b.batch_id);
    }
}
