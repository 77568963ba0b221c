//! `silt read`: committed records straight from the bucket, one JSON object per line, with no
//! broker and no metadata store. Reads up to the newest manifest's end and reports it.

use base64::Engine;
use silt_tiering::reader::{BucketReader, Record};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Binary {
    /// Invalid UTF-8 is replaced (U+FFFD) and a warning printed once.
    Lossy,
    /// Keys, values and headers that are not valid UTF-8 are printed in base64, marked with
    /// `"key_encoding": "base64"` (likewise for values and headers).
    Base64,
}

pub struct ReadOptions {
    pub url: String,
    pub topic: String,
    pub partition: Option<i32>,
    pub from_offset: Option<i64>,
    pub from_time: Option<i64>,
    pub to_offset: Option<i64>,
    pub binary: Binary,
}

fn text(
    bytes: &Option<bytes::Bytes>,
    binary: Binary,
    warned: &mut bool,
) -> (serde_json::Value, bool) {
    let Some(b) = bytes else {
        return (serde_json::Value::Null, false);
    };
    match std::str::from_utf8(b) {
        Ok(s) => (s.into(), false),
        Err(_) if binary == Binary::Base64 => (
            base64::engine::general_purpose::STANDARD.encode(b).into(),
            true,
        ),
        Err(_) => {
            if !*warned {
                eprintln!("silt read: some keys or values are not UTF-8; printing them lossily (use --binary base64)");
                *warned = true;
            }
            (String::from_utf8_lossy(b).into_owned().into(), false)
        }
    }
}

fn to_json(r: &Record, binary: Binary, warned: &mut bool) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("partition".into(), r.partition.into());
    obj.insert("offset".into(), r.offset.into());
    obj.insert("timestamp".into(), r.timestamp.into());
    let (key, key_b64) = text(&r.key, binary, warned);
    obj.insert("key".into(), key);
    if key_b64 {
        obj.insert("key_encoding".into(), "base64".into());
    }
    let (value, value_b64) = text(&r.value, binary, warned);
    obj.insert("value".into(), value);
    if value_b64 {
        obj.insert("value_encoding".into(), "base64".into());
    }
    let headers: Vec<serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            let (value, b64) = text(v, binary, warned);
            let mut h = serde_json::json!({ "key": k, "value": value });
            if b64 {
                h["value_encoding"] = "base64".into();
            }
            h
        })
        .collect();
    obj.insert("headers".into(), headers.into());
    serde_json::Value::Object(obj)
}

/// Runs `silt read`; records go to stdout, progress and the end report to stderr.
pub async fn run(opts: ReadOptions) -> anyhow::Result<()> {
    let store = silt_tiering::store::from_url(&opts.url)?;
    let reader = BucketReader::open(store).await?;
    let topic = reader.topic(&opts.topic)?.clone();
    let partitions: Vec<i32> = match opts.partition {
        Some(p) => vec![p],
        None => (0..topic.partitions).collect(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let progress = std::io::stderr().is_terminal();
    let mut warned = false;
    let mut report = Vec::new();
    for p in partitions {
        let manifest = reader.manifest(&opts.topic, p).await?;
        let end = manifest.end().0;
        let start = manifest.log_start.0;
        let from = match (opts.from_offset, opts.from_time) {
            (Some(o), _) => o.max(start),
            (None, Some(t)) => reader.offset_for_time(&manifest, t).await?,
            (None, None) => start,
        };
        let to = opts.to_offset.map_or(end, |t| t.min(end));
        let mut written = 0u64;
        let mut last_progress = Instant::now();
        let mut write_error = None;
        reader
            .read_manifest(&manifest, from, to, |r| {
                let line = to_json(&r, opts.binary, &mut warned);
                if let Err(e) = writeln!(out, "{line}") {
                    write_error = Some(e);
                    return false;
                }
                written += 1;
                if progress && last_progress.elapsed() > Duration::from_millis(250) {
                    let done = (r.offset - from + 1) as f64 / (to - from).max(1) as f64;
                    eprint!(
                        "\rpartition {p}: offset {} of {to} ({:.0}%)   ",
                        r.offset,
                        done * 100.0
                    );
                    last_progress = Instant::now();
                }
                true
            })
            .await?;
        if let Some(e) = write_error {
            // A closed pipe (`| head`) ends the read quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
        if progress {
            eprint!("\r\x1b[K");
        }
        report.push(format!(
            "partition {p}: {written} records from offset {from} below {to} (bucket end {end}, log start {start})"
        ));
    }
    out.flush()?;
    for line in report {
        eprintln!("silt read: {line}");
    }
    Ok(())
}
