//! Run the AtEcho acceptor for the QuickFIX conformance suite:
//! `cargo run -p brokerx-gateway-fix --example at_acceptor -- 5001 [store_dir]`
use std::net::TcpListener;
use std::sync::Arc;

use brokerx_gateway_fix::{AtEcho, FixConfig, FixServer};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(5001);
    let store_dir = args.next().map(Into::into);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let server = FixServer::start(
        listener,
        FixConfig::conformance(store_dir),
        Arc::new(AtEcho::new()),
    )?;
    println!("listening on {}", server.local_addr());
    loop {
        std::thread::park();
    }
}
