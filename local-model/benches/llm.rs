//! The LLM layer's own figures: the embedded model's load time, prompt and generation throughput
//! and peak memory; and token
//! counting throughput (tiktoken's o200k_base and the local model's tokenizer) on mixed Arabic and
//! English text. Not a pass/fail test: the figures go to docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p local-model --bench llm -- [--model PATH] [--tokens 128] [--threads N]
//! ```
//! `--model` defaults to `WASIT_LOCAL_MODEL`; `--threads` defaults to one per core.

use std::path::PathBuf;
use std::time::Instant;

use local_model::{LocalConfig, LocalModel};
use runtime::llm::tokens::TiktokenCounter;
use runtime::llm::{ChatMessage, ChatModel, ChatRequest, ToolChoice};

fn request(text: &str, max: u32) -> ChatRequest {
    ChatRequest {
        model: None,
        system: "You are a helpful assistant who writes long, detailed answers.".into(),
        messages: vec![ChatMessage::User(text.into())],
        tools: Vec::new(),
        tool_choice: ToolChoice::None,
        temperature: 0.0,
        max_output_tokens: max,
    }
}

/// About `bytes` of mixed Arabic and English sales text.
fn corpus(bytes: usize) -> String {
    let lines = [
        "السلام عليكم، أريد شراء سبيكة ذهب عيار ٢٤ بوزن ١٠٠ غرام، كم السعر اليوم؟ ",
        "Hello, I would like to book a meeting to discuss the gold guarantee and delivery options. ",
        "هل يوجد ضمان على الذهب؟ وما هي شروط الاسترجاع خلال ٣٠ يومًا؟ ",
        "Our affiliate programme pays 2.5% commission on every won deal, paid monthly. ",
        "ابغى اعرف عن برنامج المسوقين بالعمولة وكيف احسب عمولتي ",
    ];
    let mut s = String::with_capacity(bytes + 200);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(lines[i % lines.len()]);
        // Varying numbers and codes, so not every piece repeats.
        s.push_str(&format!("#{i} ref-{:x} ", i.wrapping_mul(2_654_435_761)));
        i += 1;
    }
    s
}

fn main() {
    let tokens: u32 = runtime::bench::flag("--tokens")
        .and_then(|t| t.parse().ok())
        .unwrap_or(128);
    let path = runtime::bench::flag("--model")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("WASIT_LOCAL_MODEL").map(PathBuf::from))
        .expect("--model PATH or WASIT_LOCAL_MODEL (run scripts/fetch-model)");
    let threads = runtime::bench::flag("--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = LocalConfig {
        threads,
        ..LocalConfig::default()
    };
    println!(
        "machine: {} cores; model {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        path.display()
    );

    let started = Instant::now();
    let model = LocalModel::load(&path, config).expect("the model loads");
    println!(
        "load: {:.2} s, peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        runtime::bench::peak_rss_mib()
    );

    // Prompt processing: a long prompt and one output token.
    let long_prompt = corpus(1600).replace(|c: char| !c.is_ascii(), "");
    let prompt_req = request(&format!("Summarise: {long_prompt}"), 1);
    let _ = model.generate(&prompt_req, None).expect("warm-up");
    let mut prompt_rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = model.generate(&prompt_req, None).expect("prompt");
        prompt_rates.push(f64::from(r.tokens_in) / t.elapsed().as_secs_f64());
    }
    prompt_rates.sort_by(f64::total_cmp);
    println!(
        "prompt: {:.0} tokens/s (median of 5, {} tokens)",
        prompt_rates[2],
        model
            .encode(&LocalModel::prompt(&prompt_req))
            .unwrap()
            .len()
    );

    // Generation: time per generated token after the first.
    let gen_req = request(
        "Write a long story about a gold merchant in Riyadh and his customers.",
        tokens,
    );
    let first = request(
        "Write a long story about a gold merchant in Riyadh and his customers.",
        1,
    );
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t1 = Instant::now();
        let _ = model.generate(&first, None).unwrap();
        let base = t1.elapsed();
        let t = Instant::now();
        let r = model.generate(&gen_req, None).unwrap();
        let spent = t.elapsed().saturating_sub(base);
        let n = r.tokens_out.saturating_sub(1).max(1);
        rates.push(f64::from(n) / spent.as_secs_f64().max(1e-9));
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "generation: {:.1} tokens/s (median of 5, up to {tokens} tokens, {threads} threads), peak RSS {:.0} MiB",
        rates[2],
        runtime::bench::peak_rss_mib()
    );

    // Token counting.
    let text = corpus(4 << 20);
    let mb = text.len() as f64 / (1 << 20) as f64;
    let reference = |m: &str| -> std::sync::Arc<dyn runtime::llm::TokenCounter> {
        std::sync::Arc::new(TiktokenCounter::reference(m))
    };
    for (name, counter) in [
        (
            "o200k_base (ours)",
            TiktokenCounter::for_model("gpt-4o-mini"),
        ),
        ("o200k_base (tiktoken-rs alone)", reference("gpt-4o-mini")),
        ("cl100k_base (ours)", TiktokenCounter::for_model("gpt-4")),
        ("cl100k_base (tiktoken-rs alone)", reference("gpt-4")),
        ("smollm2 (local)", model.counter("")),
    ] {
        let _ = counter.count("warm up the encoding");
        // A fresh thread: its memo of pieces starts empty, so the figure includes filling it.
        let (n, secs) = {
            let text = text.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let n = counter.count(&text);
                (n, t.elapsed().as_secs_f64())
            })
            .join()
            .unwrap()
        };
        println!(
            "counting {name}: {:.1} MB/s on one core ({n} tokens in {mb:.1} MB, {:.2} bytes/token)",
            mb / secs,
            text.len() as f64 / f64::from(n)
        );
    }
}
