//! Byte compatibility with the PyPI package pyiso8583 (`specs.default_ascii`), in both directions: what we encode,
//! pyiso8583 decodes to the same fields; what pyiso8583 encodes from those fields is byte for byte what we encode.
//!
//! `scripts/test` installs pyiso8583 in a virtual environment; this test finds it there or through
//! `GHOSTCARD_TEST_PYTHON`.

#[path = "../../../tests/support/python.rs"]
mod python;

use ghostcard_iso8583::{FIELDS, Format, Length, Message, encode};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value};

const CASES: usize = 400;

fn random_message(rng: &mut StdRng) -> Message {
    let mti: String = (0..4).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
    let mut message = Message::new(&mti);
    for _ in 0..rng.random_range(1..25) {
        let number = rng.random_range(2..=128u8);
        if number == ghostcard_iso8583::TERTIARY_BITMAP {
            continue;
        }
        let spec = FIELDS[usize::from(number) - 1];
        let alphabet: &[u8] = match spec.format {
            Format::Numeric => b"0123456789",
            Format::AlphaNumeric => b"ABCZ0189 ",
            Format::Hex => b"0123456789ABCDEF",
            Format::Printable => b" !#-./0189:;=?@ABZabz_~",
        };
        let length = match spec.length {
            Length::Fixed => usize::from(spec.max),
            _ => rng.random_range(0..=usize::from(spec.max)),
        };
        let value: String = (0..length).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect();
        message.set(number, value);
    }
    message
}

fn fields_json(message: &Message) -> Value {
    let mut fields = Map::new();
    fields.insert("t".to_owned(), Value::String(message.mti().to_owned()));
    for number in message.numbers() {
        fields.insert(number.to_string(), Value::String(message.get(number).unwrap_or_default().to_owned()));
    }
    Value::Object(fields)
}

#[test]
fn pyiso8583_agrees_byte_for_byte_in_both_directions() {
    let mut rng = StdRng::seed_from_u64(8583);
    let messages: Vec<Message> = (0..CASES).map(|_| random_message(&mut rng)).collect();
    let mut input = String::new();
    let mut ours = Vec::new();
    for message in &messages {
        let bytes = encode(message).expect("valid message");
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        input.push_str(&serde_json::json!({"fields": fields_json(message), "bytes": hex}).to_string());
        input.push('\n');
        ours.push(hex);
    }
    let output = python::run("pyiso8583_oracle.py", &input);
    let answers: Vec<Value> = output.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    assert_eq!(answers.len(), CASES);
    for ((message, hex), answer) in messages.iter().zip(&ours).zip(&answers) {
        assert_eq!(answer["decoded"], fields_json(message), "pyiso8583 decodes our bytes to the same fields");
        assert_eq!(answer["encoded"].as_str(), Some(hex.as_str()), "pyiso8583 encodes {message:?} to our bytes");
        let theirs: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).expect("hex"))
            .collect();
        assert_eq!(&ghostcard_iso8583::decode(&theirs).expect("we decode pyiso8583's bytes"), message);
    }
}
