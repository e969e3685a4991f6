//! The board's partition table, read from its genimage config.
//!
//! A board has one description of its disk: the `genimage.cfg` under
//! `board/` that Buildroot's post-image script hands to genimage. `quilt
//! image disk` reads the same file, so the two can never disagree. Only
//! the subset of genimage's (libconfuse) syntax the board files use is
//! understood: sections `kind [title] { ... }`, `key = value` with bare
//! words or "strings", `{ "a", "b" }` lists and `#` comments. Offsets are
//! laid out as genimage does for GPT with `align`: each partition starts
//! at the next multiple of the alignment, the first one at the alignment
//! itself.

/// Why a genimage config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The text is not genimage syntax (as far as this reader knows it).
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    /// No `image NAME { hdimage { ... } }` section of that name.
    #[error("no image {0:?} with an hdimage section (the disk image of the board)")]
    NoDisk(String),
    /// Only GPT tables are written.
    #[error("image {0:?} is not a GPT disk (partition-table-type = \"gpt\")")]
    NotGpt(String),
    /// A size that is neither a number nor a number with K, M or G.
    #[error("partition {partition:?}: size {value:?} is not bytes or a number with K, M or G")]
    BadSize { partition: String, value: String },
    /// A partition with neither a size nor an image whose size is known.
    #[error("partition {0:?} has no size: give it `size = ...` or an image section with one")]
    NoSize(String),
    /// A partition type that is neither a GUID nor a known sfdisk alias.
    #[error("partition {partition:?}: type {value:?} is not a GUID, L or U")]
    BadType { partition: String, value: String },
}

/// A value: a word/string or a `{ ... }` list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    List(Vec<String>),
}

/// `kind [title] { props; sections }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub title: Option<String>,
    pub props: Vec<(String, Value)>,
    pub sections: Vec<Section>,
}

impl Section {
    /// A property's value as a string (lists: `None`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.iter().find_map(|(k, v)| match v {
            Value::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// The first sub-section of this kind.
    pub fn section(&self, kind: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Eq,
    Open,
    Close,
    Comma,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, LayoutError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let mut chars = line.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            match c {
                '#' => break,
                c if c.is_whitespace() || c == ';' => {}
                '=' => out.push((Tok::Eq, line_no)),
                '{' => out.push((Tok::Open, line_no)),
                '}' => out.push((Tok::Close, line_no)),
                ',' => out.push((Tok::Comma, line_no)),
                '"' => {
                    let mut s = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '"' {
                            closed = true;
                            break;
                        }
                        s.push(c);
                    }
                    if !closed {
                        return Err(LayoutError::Syntax {
                            line: line_no,
                            what: "unterminated string".into(),
                        });
                    }
                    out.push((Tok::Word(s), line_no));
                }
                c if c.is_ascii_alphanumeric() || "-_./:+".contains(c) => {
                    let mut s = String::from(c);
                    while let Some(&(_, c)) = chars.peek() {
                        if c.is_ascii_alphanumeric() || "-_./:+".contains(c) {
                            s.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push((Tok::Word(s), line_no));
                }
                other => {
                    return Err(LayoutError::Syntax {
                        line: line_no,
                        what: format!("unexpected {other:?}"),
                    })
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |(_, l)| *l)
    }

    fn err<T>(&self, what: &str) -> Result<T, LayoutError> {
        Err(LayoutError::Syntax {
            line: self.line(),
            what: what.into(),
        })
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn word(&mut self) -> Result<String, LayoutError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            _ => {
                self.pos -= 1;
                self.err("expected a word")
            }
        }
    }

    /// Items until `}` (inside a section) or the end (top level).
    fn body(&mut self, into: &mut Section, top: bool) -> Result<(), LayoutError> {
        loop {
            match self.peek() {
                None if top => return Ok(()),
                None => return self.err("missing `}`"),
                Some(Tok::Close) if !top => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(Tok::Word(_)) => {
                    let key = self.word()?;
                    match self.peek() {
                        Some(Tok::Eq) => {
                            self.pos += 1;
                            let v = self.value()?;
                            into.props.push((key, v));
                        }
                        Some(Tok::Open) => {
                            self.pos += 1;
                            let mut s = Section {
                                kind: key,
                                ..Section::default()
                            };
                            self.body(&mut s, false)?;
                            into.sections.push(s);
                        }
                        Some(Tok::Word(_)) => {
                            let title = self.word()?;
                            if self.next() != Some(Tok::Open) {
                                self.pos -= 1;
                                return self.err("expected `{` after a section title");
                            }
                            let mut s = Section {
                                kind: key,
                                title: Some(title),
                                ..Section::default()
                            };
                            self.body(&mut s, false)?;
                            into.sections.push(s);
                        }
                        _ => return self.err("expected `=` or `{`"),
                    }
                }
                Some(_) => return self.err("expected a key or a section"),
            }
        }
    }

    fn value(&mut self) -> Result<Value, LayoutError> {
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let mut items = Vec::new();
            loop {
                match self.next() {
                    Some(Tok::Word(w)) => items.push(w),
                    Some(Tok::Comma) => {}
                    Some(Tok::Close) => return Ok(Value::List(items)),
                    _ => {
                        self.pos -= 1;
                        return self.err("bad list");
                    }
                }
            }
        }
        Ok(Value::Str(self.word()?))
    }
}

/// Parse a genimage config into its top-level sections.
pub fn parse(text: &str) -> Result<Vec<Section>, LayoutError> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
    };
    let mut top = Section::default();
    p.body(&mut top, true)?;
    Ok(top.sections)
}

/// The filesystem an image section makes (what `quilt image disk` must
/// create for a partition without contents of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filesystem {
    Vfat { label: Option<String> },
    Ext4 { label: Option<String> },
}

/// One partition of the disk, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// GPT name (`rootfs-a`, `esp`, ...).
    pub name: String,
    /// Partition type GUID, lower case.
    pub type_guid: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The image genimage puts in it (`rootfs.squashfs`, `data.ext4`).
    pub image: Option<String>,
    /// Filesystem of that image, when the config says how it is made.
    pub fs: Option<Filesystem>,
    /// GPT "legacy BIOS bootable" attribute (U-Boot's distro boot looks
    /// for it).
    pub bootable: bool,
}

/// The disk image of a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Alignment of every partition, bytes.
    pub align: u64,
    pub partitions: Vec<Partition>,
    /// Whole disk, bytes: the last partition's end, aligned, plus one
    /// alignment unit for the backup GPT.
    pub size: u64,
}

impl Layout {
    /// The partition with this GPT name.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Its 1-based number in the table.
    pub fn number(&self, name: &str) -> Option<usize> {
        self.partitions
            .iter()
            .position(|p| p.name == name)
            .map(|i| i + 1)
    }
}

/// `4096`, `16K`, `1M`, `2G` in bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (s.get(..i)?, 1u64 << 10),
        (i, 'M') => (s.get(..i)?, 1 << 20),
        (i, 'G') => (s.get(..i)?, 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn type_guid(partition: &str, value: &str) -> Result<String, LayoutError> {
    let v = value.to_ascii_lowercase();
    let guid = match v.as_str() {
        "l" => "0fc63daf-8483-4772-8e79-3d69d8477de4",
        "u" => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        g => g,
    };
    let ok = guid.len() == 36
        && guid.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if ok {
        Ok(guid.to_owned())
    } else {
        Err(LayoutError::BadType {
            partition: partition.into(),
            value: value.into(),
        })
    }
}

/// The GPT disk `image` of a genimage config, with offsets and sizes.
pub fn layout(text: &str, image: &str) -> Result<Layout, LayoutError> {
    let sections = parse(text)?;
    let images: Vec<&Section> = sections.iter().filter(|s| s.kind == "image").collect();
    let disk = images
        .iter()
        .find(|s| s.title.as_deref() == Some(image) && s.section("hdimage").is_some())
        .ok_or_else(|| LayoutError::NoDisk(image.into()))?;
    let hd = disk
        .section("hdimage")
        .ok_or_else(|| LayoutError::NoDisk(image.into()))?;
    if hd.get("partition-table-type") != Some("gpt") && hd.get("gpt") != Some("true") {
        return Err(LayoutError::NotGpt(image.into()));
    }
    let align = match hd.get("align") {
        Some(a) => parse_size(a)
            .filter(|&a| a > 0)
            .ok_or(LayoutError::BadSize {
                partition: "hdimage align".into(),
                value: a.into(),
            })?,
        None => 1 << 20,
    };
    let mut partitions = Vec::new();
    let mut at = align;
    for p in disk.sections.iter().filter(|s| s.kind == "partition") {
        let name = p.title.clone().unwrap_or_default();
        let src = p.get("image");
        let src_section = src.and_then(|i| {
            images
                .iter()
                .find(|s| s.title.as_deref() == Some(i))
                .copied()
        });
        let size_text = p
            .get("size")
            .or_else(|| src_section.and_then(|s| s.get("size")));
        let size = match size_text {
            Some(t) => parse_size(t).ok_or(LayoutError::BadSize {
                partition: name.clone(),
                value: t.into(),
            })?,
            None => return Err(LayoutError::NoSize(name)),
        };
        let fs = src_section.and_then(|s| {
            if let Some(v) = s.section("vfat") {
                Some(Filesystem::Vfat {
                    label: v.get("label").map(str::to_owned),
                })
            } else {
                s.section("ext4").map(|e| Filesystem::Ext4 {
                    label: e.get("label").map(str::to_owned),
                })
            }
        });
        let type_text = p.get("partition-type-uuid").unwrap_or("L");
        partitions.push(Partition {
            type_guid: type_guid(&name, type_text)?,
            offset: at,
            size,
            image: src.map(str::to_owned),
            fs,
            bootable: p.get("bootable") == Some("true"),
            name,
        });
        at = (at + size).div_ceil(align) * align;
    }
    Ok(Layout {
        align,
        partitions,
        size: at + align,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PC: &str = include_str!("../../../board/pc_x86_64/genimage.cfg");
    const RPI: &str = include_str!("../../../board/raspberrypi4_64/genimage.cfg");

    #[test]
    fn the_pc_layout_is_read_from_its_genimage_config() {
        let l = layout(PC, "disk.img").unwrap();
        let names: Vec<&str> = l.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["bootstate", "rootfs-a", "rootfs-b", "data", "esp"],
            "partitions 1-4 as on every Quilt board, the ESP last"
        );
        let esp = l.partition("esp").unwrap();
        assert_eq!(esp.type_guid, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert!(matches!(esp.fs, Some(Filesystem::Vfat { .. })));
        let data = l.partition("data").unwrap();
        assert_eq!(
            data.fs,
            Some(Filesystem::Ext4 {
                label: Some("data".into())
            })
        );
        assert_eq!(l.partition("bootstate").unwrap().offset, 1 << 20);
        assert_eq!(l.partition("rootfs-a").unwrap().offset, 2 << 20);
        assert_eq!(
            l.partition("rootfs-a").unwrap().size,
            l.partition("rootfs-b").unwrap().size,
            "both slots the same size"
        );
        for w in l.partitions.windows(2) {
            let [a, b] = w else { unreachable!() };
            assert!(a.offset + a.size <= b.offset, "{a:?} overlaps {b:?}");
            assert_eq!(b.offset % l.align, 0);
        }
        let last = l.partitions.last().unwrap();
        assert!(
            l.size >= last.offset + last.size + 33 * 512,
            "room for the backup GPT"
        );
        assert_eq!(l.number("data"), Some(4));
    }

    #[test]
    fn the_pi_layout_has_its_boot_partition_first() {
        let l = layout(RPI, "sdcard.img").unwrap();
        assert_eq!(l.partitions.first().unwrap().name, "boot");
        assert_eq!(l.number("bootstate"), Some(2));
        assert!(matches!(
            layout(RPI, "disk.img"),
            Err(LayoutError::NoDisk(_))
        ));
    }

    #[test]
    fn sizes_and_syntax_errors() {
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("16K"), Some(16 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("1T"), None);
        let e = parse("image x {\n size = \n}").unwrap_err();
        assert!(e.to_string().contains("line"), "{e}");
        assert!(parse("image x {").is_err());
        let s = parse("a b { files = { \"x\", \"y\" } c = 1 } # note").unwrap();
        assert_eq!(s[0].props[0].1, Value::List(vec!["x".into(), "y".into()]));
        assert_eq!(s[0].get("c"), Some("1"));
    }

    #[test]
    fn a_partition_without_a_size_is_refused() {
        let cfg = "image d { hdimage { partition-table-type = \"gpt\" }\n partition p { image = \"nowhere\" } }";
        assert!(matches!(layout(cfg, "d"), Err(LayoutError::NoSize(_))));
    }
}
