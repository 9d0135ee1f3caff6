//! `AtEcho`: an [`Application`] that behaves like QuickFIX's `at` acceptance-test
//! program, so the conformance suite can run without the engine.
//!
//! - NewOrderSingle (D) and SecurityDefinition (d) are echoed: same body fields and
//!   bytes (sorted by tag, repeating groups kept as blocks after their count tag), other
//!   header fields (e.g. 97) kept, 43/122 dropped.
//! - A D with PossResend 97=Y whose ClOrdID was already seen in this logon is dropped.
//!   The seen set is cleared on logout.
//! - Anything else gets BusinessMessageReject 35=j 380=3 "Unsupported Message Type".

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::dictionary;
use crate::session::{Application, InboundMessage, OutboundMessage, SessionId};

/// The echo application used for conformance testing.
#[derive(Debug, Default)]
pub struct AtEcho {
    seen: Mutex<HashMap<SessionId, HashSet<Vec<u8>>>>,
}

impl AtEcho {
    /// New echo application.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Body fields sorted by tag, each repeating group kept as one block after its
/// count tag (the order QuickFIX writes a message in).
pub fn sorted_body(msg_type: &[u8], fields: &[(u32, Vec<u8>)]) -> Vec<(u32, Vec<u8>)> {
    let def = dictionary::message(msg_type);
    let mut blocks: Vec<Vec<(u32, Vec<u8>)>> = Vec::new();
    let mut group: Option<&dictionary::GroupDef> = None;
    for (t, v) in fields {
        if let (Some(g), Some(last)) = (group, blocks.last_mut()) {
            if g.members.contains(t) {
                last.push((*t, v.clone()));
                continue;
            }
        }
        group = def.and_then(|d| d.groups.iter().find(|g| g.count == *t));
        blocks.push(vec![(*t, v.clone())]);
    }
    blocks.sort_by_key(|b| b[0].0);
    blocks.into_iter().flatten().collect()
}

impl Application for AtEcho {
    fn on_logout(&self, id: &SessionId) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(id);
        }
    }

    fn on_app_message(&self, id: &SessionId, msg: &InboundMessage<'_>) -> Vec<OutboundMessage> {
        if msg.msg_type != b"D" && msg.msg_type != b"d" {
            return vec![OutboundMessage {
                msg_type: b"j".to_vec(),
                header: vec![],
                body: vec![
                    (45, msg.seq.to_string().into_bytes()),
                    (58, b"Unsupported Message Type".to_vec()),
                    (372, msg.msg_type.to_vec()),
                    (380, b"3".to_vec()),
                ],
            }];
        }
        if msg.msg_type == b"D" {
            let cl_ord_id = msg.get(11).unwrap_or_default().to_vec();
            let mut seen = match self.seen.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let set = seen.entry(id.clone()).or_default();
            if msg.get(97) == Some(b"Y") && set.contains(&cl_ord_id) {
                return vec![];
            }
            set.insert(cl_ord_id);
        }
        let mut header = Vec::new();
        let mut body = Vec::new();
        for f in &msg.fields[3..] {
            match f.tag {
                8 | 9 | 35 | 34 | 49 | 52 | 56 | 43 | 122 | 10 | 89 | 93 => {}
                t if dictionary::is_header(t) => header.push((t, f.value.to_vec())),
                t => body.push((t, f.value.to_vec())),
            }
        }
        vec![OutboundMessage {
            msg_type: msg.msg_type.to_vec(),
            header,
            body: sorted_body(msg.msg_type, &body),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_stay_blocks() {
        let f = |t: u32, v: &str| (t, v.as_bytes().to_vec());
        let body = vec![
            f(11, "a"),
            f(386, "2"),
            f(336, "X"),
            f(336, "Y"),
            f(55, "I"),
            f(21, "1"),
        ];
        let tags: Vec<u32> = sorted_body(b"D", &body).iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, vec![11, 21, 55, 386, 336, 336]);
    }
}
