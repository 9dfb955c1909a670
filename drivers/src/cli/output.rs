//! Writing the firehose to stdout: JSON Lines in batches, or one readable coloured line per item.

use openflume_proto::{Event, Item, Level};
use std::borrow::Cow;
use std::io::{self, Write};

/// How items are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line (the stable, machine-readable format).
    Json,
    /// One human-readable line per item, coloured on a terminal.
    Pretty,
}

/// Bytes per write during a burst: the kernel's default pipe size, so one write can fill an
/// empty pipe. Larger writes (256 KiB) measured no less CPU per event into a pipe.
const WRITE_BYTES: usize = 64 * 1024;

/// Writes items to a buffered writer; the caller flushes when no further item is ready, so a
/// burst costs a few large writes and a quiet stream still arrives line by line.
pub(crate) struct ItemWriter<W: Write> {
    out: io::BufWriter<W>,
    format: Format,
    colour: bool,
    /// The zone pretty times are shown in.
    zone: jiff::tz::TimeZone,
    line: Vec<u8>,
}

impl<W: Write> ItemWriter<W> {
    pub(crate) fn new(out: W, format: Format, colour: bool) -> Self {
        ItemWriter {
            out: io::BufWriter::with_capacity(WRITE_BYTES, out),
            format,
            colour,
            zone: jiff::tz::TimeZone::UTC,
            line: Vec::with_capacity(4096),
        }
    }

    /// Pretty times in `zone` (the local zone on the command line), UTC by default.
    pub(crate) fn in_zone(mut self, zone: jiff::tz::TimeZone) -> Self {
        self.zone = zone;
        self
    }

    pub(crate) fn write(&mut self, item: &Item) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.line.clear();
                match item {
                    Item::Event(event) => event_line(&mut self.line, event)?,
                    // Logs, and kinds of item newer than this writer: serde's own line.
                    _ => serde_json::to_writer(&mut self.line, item)?,
                }
                self.line.push(b'\n');
                self.out.write_all(&self.line)
            }
            Format::Pretty => {
                let line = pretty(item, self.colour, &self.zone);
                self.out.write_all(line.as_bytes())
            }
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// An event's JSON line, the same bytes as serialising the `Item`, but with `data` copied as it
/// is: it is valid JSON by construction, and serde would check it once more.
fn event_line(line: &mut Vec<u8>, event: &Event) -> serde_json::Result<()> {
    line.extend_from_slice(br#"{"kind":"event","event":{"source":"#);
    serde_json::to_writer(&mut *line, &event.source)?;
    line.extend_from_slice(br#","type":"#);
    serde_json::to_writer(&mut *line, &event.event_type)?;
    line.extend_from_slice(br#","data":"#);
    line.extend_from_slice(event.data.get().as_bytes());
    line.extend_from_slice(br#","meta":"#);
    serde_json::to_writer(&mut *line, &event.meta)?;
    line.extend_from_slice(br#","receivedAt":"#);
    serde_json::to_writer(&mut *line, &event.received_at)?;
    line.extend_from_slice(b"}}");
    Ok(())
}

/// `12:00:01.250+01:00 event discord  MESSAGE_CREATE  channel=… user=…  {"content":…}` (data cut
/// to 160 chars), the time in `zone` with its offset.
pub(crate) fn pretty(item: &Item, colour: bool, zone: &jiff::tz::TimeZone) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    match item {
        Item::Event(event) => {
            let time = clock_time(event.received_at.0, zone);
            let meta: Vec<String> = event
                .meta
                .iter()
                .filter(|(k, _)| *k != "event_type")
                .map(|(k, v)| format!("{}={}", neutral(k), neutral(v)))
                .collect();
            format!(
                "{} {} {} {} {} {}\n",
                paint("2", &time),
                paint("1;35", "event"),
                paint("1;36", &format!("{:<8}", neutral(&event.source))),
                paint("1", &neutral(&event.event_type)),
                meta.join(" "),
                paint("2", &neutral(&cut(event.data.get(), 160))),
            )
        }
        Item::Log(log) => {
            let time = clock_time(log.timestamp.0, zone);
            let level_colour = match log.level {
                Level::Debug => "2",
                Level::Info => "32",
                Level::Warn => "33",
                Level::Error => "1;31",
                // A level newer than this writer: plain.
                _ => "0",
            };
            let error = log
                .error
                .as_deref()
                .map(|e| format!(": {}", neutral(e)))
                .unwrap_or_default();
            format!(
                "{} {} {} {} {}{}\n",
                paint("2", &time),
                paint(level_colour, &format!("{:<5}", log.level.as_str())),
                paint("36", &format!("{:<8}", neutral(&log.source))),
                paint("2", &neutral(&log.action)),
                neutral(&log.message),
                error,
            )
        }
        // A kind of item newer than this writer (`Item` is `#[non_exhaustive]`): its JSON, so
        // nothing is hidden, after the time and source every item has.
        other => format!(
            "{} {} {} {}\n",
            paint("2", &clock_time(other.timestamp().0, zone)),
            paint("2", "item "),
            paint("36", &format!("{:<8}", neutral(other.source()))),
            neutral(&serde_json::to_string(other).unwrap_or_default()),
        ),
    }
}

/// `text` made harmless for a terminal: control characters (newlines, ESC, BEL, C1) and the
/// invisible bidirectional overrides are shown as escapes, so text a server controls can neither
/// forge a line nor rewrite the screen. Borrowed when there is nothing to escape.
pub(crate) fn neutral(text: &str) -> Cow<'_, str> {
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hostile(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `HH:MM:SS.mmm±HH:MM` in `zone`: the offset says which zone a reader is looking at.
fn clock_time(unix_ms: i64, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(unix_ms) {
        Ok(at) => at
            .to_zoned_datetime(zone.clone())
            .strftime("%H:%M:%S%.3f%:z")
            .to_string(),
        // Outside jiff's range (years beyond ±9999): the raw number, rather than nothing.
        Err(_) => format!("@{unix_ms}ms"),
    }
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::{Event, Log, RawJson, UnixMillis};

    #[test]
    fn json_lines_match_the_documented_shape() {
        let event = Event::new(
            "discord",
            "MESSAGE_CREATE",
            RawJson::from_str(r#"{"content":"hi"}"#).unwrap(),
            UnixMillis(1764100000000),
        )
        .with_meta("event_type", "MESSAGE_CREATE");
        let mut w = ItemWriter::new(Vec::new(), Format::Json, false);
        w.write(&Item::Event(event)).unwrap();
        w.flush().unwrap();
        let text = String::from_utf8(w.out.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"event\",\"event\":{\"source\":\"discord\",\"type\":\"MESSAGE_CREATE\",\"data\":{\"content\":\"hi\"},\"meta\":{\"event_type\":\"MESSAGE_CREATE\"},\"receivedAt\":1764100000000}}\n"
        );
    }

    /// The hand-written event line is byte for byte what serde writes for the item.
    #[test]
    fn event_lines_equal_serde_output() {
        let events = [
            Event::new("x", "t", RawJson::null(), UnixMillis(-5)),
            Event::new(
                "dis\"cord\n",
                "MESSAGE_CREATE",
                RawJson::from_str(r#" {"a" : [1, "é\u0000"]} "#).unwrap(),
                UnixMillis(1764100000000),
            )
            .with_meta("channel_id", "1")
            .with_meta("quote\"key", "tab\tvalue"),
        ];
        for event in events {
            let item = Item::Event(event);
            let mut w = ItemWriter::new(Vec::new(), Format::Json, false);
            w.write(&item).unwrap();
            w.flush().unwrap();
            let text = String::from_utf8(w.out.into_inner().unwrap()).unwrap();
            assert_eq!(text, serde_json::to_string(&item).unwrap() + "\n");
        }
    }

    /// Text a server controls cannot forge a line or rewrite the terminal.
    #[test]
    fn pretty_lines_neutralise_hostile_text() {
        let event = Event::new(
            "discord",
            "MESSAGE_CREATE\n12:00:00.000 event discord FORGED",
            RawJson::from_str("{\n\"a\": 1}").unwrap(),
            UnixMillis(0),
        )
        .with_meta("channel_id", "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}");
        let log = Log::new(
            Level::Warn,
            "slack",
            "x\ny",
            "bad\r\u{9b}31m",
            UnixMillis(0),
        )
        .with_error("\u{1b}[1A");
        for item in [Item::Event(event), Item::Log(log)] {
            let line = pretty(&item, false, &jiff::tz::TimeZone::UTC);
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\n'),
                "{line:?}"
            );
            assert!(!line.contains('\u{202e}'), "{line:?}");
        }
        assert_eq!(neutral("plain ✓ text"), "plain ✓ text");
        assert_eq!(neutral("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }

    #[test]
    fn pretty_lines_are_one_line_and_uncoloured_off_terminal() {
        let log = Log::new(
            Level::Warn,
            "slack",
            "ws.reconnect",
            "reconnecting",
            UnixMillis(3_723_004),
        )
        .with_error("boom");
        let line = pretty(&Item::Log(log.clone()), false, &jiff::tz::TimeZone::UTC);
        assert_eq!(
            line,
            "01:02:03.004+00:00 warn  slack    ws.reconnect reconnecting: boom\n"
        );
        // In a zone of its own, with that zone's offset (no DST in Kolkata).
        let kolkata = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        let line = pretty(&Item::Log(log), false, &kolkata);
        assert!(line.starts_with("06:32:03.004+05:30 warn"), "{line}");
        let long = Event::new(
            "x",
            "t",
            RawJson::from_str(&format!("\"{}\"", "é".repeat(300))).unwrap(),
            UnixMillis(0),
        );
        let line = pretty(&Item::Event(long), true, &jiff::tz::TimeZone::UTC);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains('…'));
    }
}
