//! `ghostcard clearing import FILE`: post a file of clearing records (JSON lines) and report each one.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result};
use ghostcard_server::App;
use ghostcard_server::service::clearing::{ClearingRecordInput, post_record};
use serde_json::json;

use crate::ConfigArguments;

#[derive(Debug, clap::Subcommand)]
pub enum ClearingCommand {
    /// Post a clearing file: one JSON record a line, with the fields of POST /v1/network/clearings
    ///
    /// Each record is matched to its authorization (network_transaction_id, else rrn + auth_code with acquirer_id
    /// and merchant_id), posted in its own transaction, and reported as posted, duplicate, unmatched or rejected.
    /// A record id seen before is never posted again: importing the same file twice is safe.
    #[command(
        after_long_help = "A line looks like:\n  {\"id\": \"rec-1\", \"type\": \"capture\", \"rrn\": \"RRN000000011\", \"auth_code\": \"A1B2C3\", \
\"amount\": 3000, \"currency\": \"USD\"}\n\nExample:\n  ghostcard clearing import clearing-2026-11-26.jsonl"
    )]
    Import {
        /// The file (JSON lines; blank lines are skipped).
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArguments,
    },
}

pub fn run(command: ClearingCommand) -> Result<()> {
    let ClearingCommand::Import { file, config } = command;
    let loaded = config.load()?;
    let reader =
        std::io::BufReader::new(std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let app = App::start(loaded).await?;
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for (index, line) in reader.lines().enumerate() {
            let line_number = index + 1;
            let line = line.with_context(|| format!("cannot read line {line_number} of {}", file.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let (id, result, clearing_id, flags) = match serde_json::from_str::<ClearingRecordInput>(&line) {
                Ok(record) => {
                    let result = post_record(&app, &record).await.with_context(|| format!("line {line_number}: posting failed"))?;
                    (result.id, result.result, result.clearing_id, result.flags)
                }
                Err(error) => (String::new(), "rejected".to_owned(), None, vec![format!("invalid_json: {error}")]),
            };
            *counts.entry(result.clone()).or_default() += 1;
            if config.json {
                println!("{}", json!({ "line": line_number, "id": id, "result": result, "clearing_id": clearing_id, "flags": flags }));
            } else {
                let flags = if flags.is_empty() { String::new() } else { format!(" [{}]", flags.join(", ")) };
                println!("line {line_number}: {id} {result}{}{flags}", clearing_id.map(|id| format!(" ({id})")).unwrap_or_default());
            }
            if line_number % 1000 == 0 {
                eprintln!("… {line_number} lines");
            }
        }
        let summary: Vec<String> = counts.iter().map(|(result, count)| format!("{count} {result}")).collect();
        if config.json {
            println!("{}", json!({ "summary": counts }));
        } else {
            println!("{}", if summary.is_empty() { "The file has no records.".to_owned() } else { summary.join(", ") });
        }
        app.store.close().await;
        Ok(())
    })
}
