//! TensorBoard event files, so `tensorboard --logdir runs` shows a run's scalars and sample
//! grids beside the ones users already have from PyTorch.
//!
//! The format: a TFRecord file `events.out.tfevents.<unix time>.<host>` of serialised
//! `tensorboard.Event` protocol buffers (tensorboard/compat/proto/event.proto and summary.proto;
//! the messages we need are derived with `prost` below, field numbers from those files). Each
//! record is
//!
//! ```text
//! u64 length (little endian) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)
//! ```
//!
//! with masked_crc(x) = ((c >> 15) | (c << 17)) + 0xa282ead8, c = CRC-32C (Castagnoli) of x.
//! The first record is an Event carrying `file_version = "brain.Event:2"`.
//!
//! Durability: every `add_*` call writes one whole record with a single `write_all` on an
//! unbuffered file, so a reader polling the file sees each logging interval as soon as it is
//! written, and a crash can cut at most the last record short (the reader stops there). A
//! writer never appends to an existing file: a resumed run starts a new file, opened with a
//! `SessionLog START` event just past the checkpoint's step, on which TensorBoard drops the
//! points that the interrupted run logged after that checkpoint (as `MetricsLog::open` drops
//! its lines).

use crate::eval_log::EvalLine;
use crate::metrics::MetricsLine;
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `tensorboard.Event` (event.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// The `what` oneof of `Event`, the members we write.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorboard.SessionLog` (event.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// SessionStatus: 1 START, 2 STOP, 3 CHECKPOINT.
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// SessionLog.SessionStatus.START.
pub const SESSION_START: i32 = 1;

/// `tensorboard.Summary` (summary.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorboard.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Data", tags = "2, 4")]
    pub data: Option<Data>,
}

/// The `value` oneof of `Summary.Value`, the members we write.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

/// `tensorboard.Summary.Image`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The encoded image (PNG here).
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// The TFRecord checksum: CRC-32C, rotated right by 15 bits, plus a constant.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its checksum, the data, its checksum.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Why a TensorBoard write failed.
#[derive(Debug, thiserror::Error)]
pub enum TbError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("image for tag {tag:?} is not a PNG: {reason}")]
    NotPng { tag: String, reason: String },
}

/// Writes one event file under a directory (a run's `tb/`).
#[derive(Debug)]
pub struct TbWriter {
    path: PathBuf,
    file: std::fs::File,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name, as TensorFlow puts it in event-file names.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().replace(['/', '\\'], "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl TbWriter {
    /// Starts a new event file `dir/events.out.tfevents.<time>.<host>` (a `.N` suffix if that
    /// name is taken) and writes the file-version event. `resumed_from` is the step of the
    /// checkpoint the run starts from (0 for a new run); when > 0, a `SessionLog START` at
    /// step `resumed_from + 1` makes TensorBoard discard what an interrupted run logged after
    /// that checkpoint (it keeps the points with smaller steps).
    pub fn create(dir: &Path, resumed_from: u64) -> Result<Self, TbError> {
        std::fs::create_dir_all(dir).map_err(|source| TbError::Io { path: dir.into(), source })?;
        let secs = now() as u64;
        let base = format!("events.out.tfevents.{secs:010}.{}", hostname());
        let mut n = 0;
        let (path, file) = loop {
            let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
            let path = dir.join(name);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(source) => return Err(TbError::Io { path, source }),
            }
        };
        let mut w = Self { path, file };
        w.write_event(Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        if resumed_from > 0 {
            w.write_event(Event {
                wall_time: now(),
                step: resumed_from as i64 + 1,
                what: Some(What::SessionLog(SessionLog {
                    status: SESSION_START,
                    checkpoint_path: String::new(),
                    msg: format!("resumed from step {resumed_from}"),
                })),
            })?;
        }
        Ok(w)
    }

    /// Opens a writer in the run's `tb/` (see [`TbWriter::create`]).
    pub fn for_run(run: &ddpm_run::RunDir, resumed_from: u64) -> Result<Self, TbError> {
        Self::create(&run.tensorboard_dir(), resumed_from)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one record, with one write.
    pub fn write_event(&mut self, event: Event) -> Result<(), TbError> {
        let record = frame_record(&event.encode_to_vec());
        self.file
            .write_all(&record)
            .map_err(|source| TbError::Io { path: self.path.clone(), source })
    }

    /// Scalars at `step`, one event; non-finite values are left out (TensorBoard draws a
    /// NaN as a gap anyway, and an empty t-quartile is not a measurement).
    pub fn add_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), TbError> {
        let value: Vec<Value> = scalars
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| Value {
                tag: tag.to_string(),
                data: Some(Data::SimpleValue(*v as f32)),
            })
            .collect();
        if value.is_empty() {
            return Ok(());
        }
        self.write_event(Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// A PNG image at `step` (e.g. a sample grid); its size and colour space are read from the
    /// PNG header.
    pub fn add_image_png(&mut self, tag: &str, step: u64, png: &[u8]) -> Result<(), TbError> {
        use image::ImageDecoder;
        let bad = |reason: String| TbError::NotPng { tag: tag.into(), reason };
        let decoder = image::codecs::png::PngDecoder::new(std::io::Cursor::new(png))
            .map_err(|e| bad(e.to_string()))?;
        let (width, height) = decoder.dimensions();
        let colorspace = match decoder.color_type().channel_count() {
            1 => 1,
            2 => 2,
            3 => 3,
            _ => 4,
        };
        let image = Image {
            height: height as i32,
            width: width as i32,
            colorspace,
            encoded_image_string: png.to_vec(),
        };
        self.write_event(Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary {
                value: vec![Value { tag: tag.into(), data: Some(Data::Image(image)) }],
            })),
        })
    }

    /// One line of `metrics.jsonl` as the scalars `loss/mean`, `loss/t_q1` .. `loss/t_q4`
    /// (t in the four quarters of [0, T)), `train/grad_norm`, `train/lr`, `train/images_per_s`.
    pub fn add_metrics(&mut self, line: &MetricsLine) -> Result<(), TbError> {
        let q = &line.loss_by_t_quartile;
        self.add_scalars(
            line.step,
            &[
                ("loss/mean", line.loss),
                ("loss/t_q1", q[0]),
                ("loss/t_q2", q[1]),
                ("loss/t_q3", q[2]),
                ("loss/t_q4", q[3]),
                ("train/grad_norm", line.grad_norm),
                ("train/lr", line.lr),
                ("train/images_per_s", line.images_per_s),
            ],
        )
    }

    /// One line of `eval.jsonl` as `eval/<metric>` and, when given, `eval/<metric>_baseline`.
    pub fn add_eval(&mut self, line: &EvalLine) -> Result<(), TbError> {
        let tag = format!("eval/{}", line.metric);
        let base = format!("eval/{}_baseline", line.metric);
        let mut scalars = vec![(tag.as_str(), line.value)];
        if let Some(b) = line.baseline {
            scalars.push((base.as_str(), b));
        }
        self.add_scalars(line.step, &scalars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the records back, checking both checksums of each; stops at a cut-short record.
    fn read_records(bytes: &[u8]) -> (Vec<Event>, bool) {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes.len() - i < 12 {
                return (out, true);
            }
            let len_bytes = &bytes[i..i + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(len_bytes), "length checksum of record {}", out.len());
            if bytes.len() - i < 16 + len {
                return (out, true);
            }
            let data = &bytes[i + 12..i + 12 + len];
            let crc = u32::from_le_bytes(bytes[i + 12 + len..i + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(data), "data checksum of record {}", out.len());
            out.push(Event::decode(data).unwrap());
            i += 16 + len;
        }
        (out, false)
    }

    #[test]
    fn masked_crc_matches_tensorboards_own() {
        // Values from tensorboard 2.21's Python writer
        // (tensorboard.summary.writer.record_writer.masked_crc32c): the CRC-32C check value of
        // "123456789" is 0xe3069283 (RFC 3720 B.4), masked 0xc78ab0e5; and the length checksum
        // that opens every event file (the 24-byte file-version event) is a3 7f 4b 22.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()).to_le_bytes(), [0xa3, 0x7f, 0x4b, 0x22]);
        let first = Event {
            wall_time: 1.0,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        };
        assert_eq!(first.encode_to_vec().len(), 24);
    }

    #[test]
    fn records_round_trip_and_a_cut_short_file_keeps_every_earlier_record() {
        let dir = ddpm_testkit::temp_dir("tb-unit");
        let mut w = TbWriter::create(&dir, 0).unwrap();
        w.add_scalars(10, &[("a", 1.5), ("b", f64::NAN)]).unwrap();
        w.add_scalars(20, &[("a", 2.5)]).unwrap();
        let path = w.path().to_path_buf();
        assert!(path.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
        let bytes = std::fs::read(&path).unwrap();
        let (events, cut) = read_records(&bytes);
        assert!(!cut);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        let framed: usize = events.iter().map(|e| frame_record(&e.encode_to_vec()).len()).sum();
        assert_eq!(framed, bytes.len());
        let Some(What::Summary(s)) = &events[1].what else { panic!("{:?}", events[1]) };
        assert_eq!(events[1].step, 10);
        // The NaN is left out.
        assert_eq!(s.value, vec![Value { tag: "a".into(), data: Some(Data::SimpleValue(1.5)) }]);
        // A crash in the middle of the third record loses that record only.
        for cut_at in [bytes.len() - 1, bytes.len() - 5, bytes.len() - 20] {
            let (events, cut) = read_records(&bytes[..cut_at]);
            assert!(cut);
            assert_eq!(events.len(), 2, "cut at {cut_at}");
        }
        // A second writer in the same second gets its own file.
        let w2 = TbWriter::create(&dir, 0).unwrap();
        assert_ne!(w2.path(), path.as_path());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_resumed_writer_starts_its_file_with_a_session_start() {
        let dir = ddpm_testkit::temp_dir("tb-resume");
        let w = TbWriter::create(&dir, 1500).unwrap();
        let (events, _) = read_records(&std::fs::read(w.path()).unwrap());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].step, 1501);
        let Some(What::SessionLog(l)) = &events[1].what else { panic!("{:?}", events[1]) };
        assert_eq!(l.status, SESSION_START);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_carry_their_png_size_and_colour_space() {
        let dir = ddpm_testkit::temp_dir("tb-img");
        let mut w = TbWriter::create(&dir, 0).unwrap();
        let png = ddpm_viz::image_grid_png(&[0.0f32; 3 * 4 * 2], [1, 3, 4, 2], 1, 1, 2).unwrap();
        w.add_image_png("samples", 7, &png).unwrap();
        assert!(matches!(w.add_image_png("bad", 7, b"GIF89a"), Err(TbError::NotPng { .. })));
        let (events, _) = read_records(&std::fs::read(w.path()).unwrap());
        let Some(What::Summary(s)) = &events[1].what else { panic!() };
        let Some(Data::Image(img)) = &s.value[0].data else { panic!() };
        assert_eq!((img.width, img.height, img.colorspace), (6, 8, 3));
        assert_eq!(img.encoded_image_string, png);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
