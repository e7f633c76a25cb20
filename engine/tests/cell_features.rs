//! The cell features (`lstm`, `gru`, `simple-rnn`): a blob whose cell this build compiled out is refused by
//! `Model::open` with `Error::FeatureDisabled` naming the layer and the feature; one whose cell is compiled
//! in opens. CI runs this file under several feature sets, e.g.
//! `cargo test -p tinyrnn --no-default-features --features lstm --test cell_features`.

use tinyrnn::{Error, Model};

#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);

/// SimpleRNN(2) as layer 0.
static KPI: &Aligned<[u8]> = &Aligned(*include_bytes!("../../firmware/models/kpi_forecaster.trnn"));
/// Embedding, then Bidirectional(LSTM(8)) as layer 1.
static SENTIMENT: &Aligned<[u8]> =
    &Aligned(*include_bytes!("../../firmware/models/sentiment.trnn"));

fn expect(blob: &[u8], compiled_in: bool, layer: u8, feature: &'static str) {
    match Model::open(blob) {
        Ok(_) => assert!(compiled_in, "a blob needing `{feature}` opened without it"),
        Err(e) => {
            assert!(
                !compiled_in,
                "a blob needing `{feature}` was refused with it compiled in: {e}"
            );
            assert_eq!(e, Error::FeatureDisabled { layer, feature });
            let message = format!("{e}");
            assert!(message.contains(&format!("layer {layer}")) && message.contains(feature));
        }
    }
}

#[test]
fn simple_rnn_blob_opens_only_with_its_feature() {
    expect(&KPI.0, cfg!(feature = "simple-rnn"), 0, "simple-rnn");
}

#[test]
fn lstm_blob_opens_only_with_its_feature() {
    expect(&SENTIMENT.0, cfg!(feature = "lstm"), 1, "lstm");
}
