//! BrokerX FIX 4.4 acceptor: codec, dictionary, session layer, store and server.
//! See README.md.

pub mod at;
pub mod codec;
pub mod config;
pub mod dictionary;
pub mod engine_app;
pub mod meters;
pub mod orders;
pub mod server;
pub mod session;
pub mod store;

pub use at::AtEcho;
pub use engine_app::{EngineApp, EngineAppConfig, EngineSession};
pub use orders::SymbolInfo;
pub use server::{FixConfig, FixServer, Sessions};
pub use session::{
    Action, Application, InboundMessage, OutboundMessage, Session, SessionConfig, SessionId,
};
