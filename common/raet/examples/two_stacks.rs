//! The two-stack tutorial of the reference `raet`, in Rust.
//!
//! `beta` is a main estate; `alpha` joins it over loopback UDP (join, then
//! allow: long-term keys exchanged and accepted, session keys agreed), sends
//! it a message, and `beta` answers. Run it with
//! `cargo run --example two_stacks`.

use raet::keep::{AutoMode, MemKeep};
use raet::road::RoadConfig;
use raet::stack::RoadStack;
use serde_json::{json, Map, Value};

/// A JSON object literal as a message body.
fn body(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Runs the tutorial and returns the two messages as received (by beta, by alpha).
async fn tutorial() -> Result<(Map<String, Value>, Map<String, Value>), Box<dyn std::error::Error>>
{
    let loopback = "127.0.0.1:0".parse()?;

    // A main estate accepts first-contact ("vacuous") joins.
    let mut config = RoadConfig::new("beta", loopback);
    config.main = true;
    config.auto = AutoMode::Always;
    let beta = RoadStack::bind(config, None, Box::new(MemKeep::new())).await?;

    let mut config = RoadConfig::new("alpha", loopback);
    config.auto = AutoMode::Always;
    let alpha = RoadStack::bind(config, None, Box::new(MemKeep::new())).await?;

    // Join and allow; resolves with alpha's uid for beta once beta is allowed.
    let beta_uid = alpha.join(beta.local_addr()).await?;

    // transmit() resolves when beta's application has the whole message: when its recv()
    // hands it over. So the two run side by side.
    let (sent, received) = tokio::join!(
        alpha.transmit(
            beta_uid,
            body(json!({"subject": "Hello beta", "content": "from alpha"})),
        ),
        beta.recv()
    );
    sent?;
    let (from, alpha_uid, to_beta) = received.ok_or("beta stopped")?;
    println!(
        "beta received from {from}: {}",
        Value::Object(to_beta.clone())
    );

    let (sent, received) = tokio::join!(
        beta.transmit(
            alpha_uid,
            body(json!({"subject": "Hello alpha", "content": "from beta"})),
        ),
        alpha.recv()
    );
    sent?;
    let (from, _, to_alpha) = received.ok_or("alpha stopped")?;
    println!(
        "alpha received from {from}: {}",
        Value::Object(to_alpha.clone())
    );

    alpha.shutdown().await;
    beta.shutdown().await;
    Ok((to_beta, to_alpha))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tutorial().await.map(|_| ())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_tutorial_exchanges_both_messages() {
        let run = tokio::time::timeout(std::time::Duration::from_secs(30), super::tutorial());
        let (to_beta, to_alpha) = run
            .await
            .expect("tutorial timed out")
            .expect("tutorial failed");
        assert_eq!(to_beta["subject"], "Hello beta");
        assert_eq!(to_alpha["content"], "from beta");
    }
}
