//! Opens arbitrary bytes as a blob, twice: as given (the checksum refuses almost everything) and with the
//! checksum repaired, so the fuzzer explores the header and tensor validation behind it. Whatever opens
//! is then run over a short window and streamed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyrnn::format::{InputKind, CRC, CRC_LEN};
use tinyrnn::{Model, Runtime};

fn exercise(bytes: &[u8]) {
    let Ok(model) = Model::open(bytes) else { return };
    let steps = model.input().steps.map_or(3, |s| s as usize);
    if steps > 64 {
        return;
    }
    let Ok(memory) = model.window_memory(steps) else { return };
    if memory.total() > 1 << 20 {
        return;
    }
    let mut buffer = vec![0.0f32; memory.total()];
    let Ok(mut runtime) = Runtime::new(&model, &mut buffer) else { return };
    let Ok(len) = model.output_len(steps) else { return };
    let mut out = vec![0.0f32; len];
    let tokens = model.input().kind == InputKind::Tokens;
    if tokens {
        let _ = runtime.run_window_tokens(&vec![1; steps], &mut out);
    } else {
        let _ = runtime.run_window(&vec![0.5; steps * model.input_width()], &mut out);
    }
    let mut step_out = vec![0.0f32; model.step_output_len()];
    for _ in 0..steps {
        let _ = if tokens {
            runtime.step_token(1, &mut step_out)
        } else {
            runtime.step(&vec![-0.5; model.input_width()], &mut step_out)
        };
    }
}

fuzz_target!(|data: &[u8]| {
    // The engine reads tensors in place and needs an aligned blob.
    let mut words = vec![0u128; data.len().div_ceil(16)];
    let bytes: &mut [u8] = words_as_bytes(&mut words);
    bytes[..data.len()].copy_from_slice(data);
    exercise(&bytes[..data.len()]);
    if data.len() >= CRC_LEN {
        let n = data.len() - CRC_LEN;
        let crc = CRC.checksum(&bytes[..n]);
        bytes[n..data.len()].copy_from_slice(&crc.to_le_bytes());
        exercise(&bytes[..data.len()]);
    }
});

fn words_as_bytes(words: &mut [u128]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements and the view covers exactly the words' bytes.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 16) }
}
