//! Reading a historian export row by row: CSV with the `csv` crate (one
//! record in memory at a time) and .xlsx with calamine's streaming cell
//! reader (one row of cells at a time; the sheet is never loaded whole).

use std::io::{BufReader, Read as _, Seek as _};
use std::path::Path;

use super::ImportError;
use super::parse::Cell;

/// What is wrong with a row as a whole, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowShape {
    Whole,
    /// The file's last line, cut short (no line break at the end and fewer
    /// cells than the header).
    Truncated,
    /// Another number of cells than the header has.
    Width(usize),
    /// Not UTF-8 text.
    Encoding,
}

/// One data row.
#[derive(Debug)]
pub struct RowView<'a> {
    /// As a spreadsheet counts: the first line of the file is row 1.
    pub no: u64,
    pub cells: &'a [Cell<'a>],
    pub shape: RowShape,
}

/// Where rows go.
pub trait Sink {
    /// The header row (row `no`), before any data row.
    fn header(&mut self, columns: &[String], no: u64) -> Result<(), ImportError>;
    fn row(&mut self, r: &RowView<'_>) -> Result<(), ImportError>;
    /// `done` of `total` (bytes for CSV, rows for xlsx).
    fn progress(&mut self, done: u64, total: u64);
}

/// Options both formats share.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub delimiter: u8,
    /// Rows before the header (a historian's preamble).
    pub skip_rows: u32,
    /// The worksheet (.xlsx; default the first).
    pub sheet: Option<String>,
}

/// The file's format, from its name or its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// xlsx files are zip archives (`PK\x03\x04`).
    pub fn sniff(path: &Path) -> Result<Format, ImportError> {
        let mut head = [0u8; 4];
        let mut f = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
        let n = f.read(&mut head).map_err(|e| ImportError::io(path, e))?;
        if n == 0 {
            return Err(ImportError::Empty);
        }
        Ok(if n == 4 && &head == b"PK\x03\x04" {
            Format::Xlsx
        } else {
            Format::Csv
        })
    }
}

fn row_shape(n: usize, width: usize, last_without_newline: bool) -> RowShape {
    if n == width {
        RowShape::Whole
    } else if n < width && last_without_newline {
        RowShape::Truncated
    } else {
        RowShape::Width(n)
    }
}

/// Read a CSV file into `sink`.
pub fn read_csv(path: &Path, o: &ReadOptions, sink: &mut dyn Sink) -> Result<(), ImportError> {
    let mut file = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
    let total = file.metadata().map_err(|e| ImportError::io(path, e))?.len();
    if total == 0 {
        return Err(ImportError::Empty);
    }
    let ends_with_newline = {
        let mut last = [0u8; 1];
        file.seek(std::io::SeekFrom::End(-1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(|e| ImportError::io(path, e))?;
        file.rewind().map_err(|e| ImportError::io(path, e))?;
        last[0] == b'\n' || last[0] == b'\r'
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(o.delimiter)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let mut rec = csv::ByteRecord::new();
    let mut no = 0u64;
    let mut width = None;
    // The previous record, handed on once the next is read.
    let mut prec = csv::ByteRecord::new();
    let mut pending: Option<u64> = None;
    let mut every = 0u32;
    // A record is handed on once the next is read, so that the last one
    // is known as the last (a truncated file's tail).
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| ImportError::Unreadable(format!("CSV after row {no}: {e}")))?;
        if more {
            no = rec.position().map_or(no + 1, |p| p.line());
        }
        if let Some(pno) = pending.take() {
            let last = !more;
            match width {
                None => {
                    let cols: Vec<String> = prec
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).trim().to_owned())
                        .collect();
                    width = Some(cols.len());
                    sink.header(&cols, pno)?;
                }
                Some(w) => {
                    let mut shape = row_shape(prec.len(), w, last && !ends_with_newline);
                    let mut cells: Vec<Cell<'_>> = Vec::with_capacity(prec.len());
                    for f in prec.iter() {
                        match std::str::from_utf8(f) {
                            Ok("") => cells.push(Cell::Empty),
                            Ok(s) => cells.push(Cell::Text(s)),
                            Err(_) => {
                                shape = RowShape::Encoding;
                                cells.push(Cell::Empty);
                            }
                        }
                    }
                    sink.row(&RowView {
                        no: pno,
                        cells: &cells,
                        shape,
                    })?;
                }
            }
            every += 1;
            if every >= 4096 {
                every = 0;
                sink.progress(rdr.position().byte(), total);
            }
        }
        if !more {
            break;
        }
        if no > u64::from(o.skip_rows) {
            std::mem::swap(&mut prec, &mut rec);
            pending = Some(no);
        }
    }
    if width.is_none() {
        return Err(ImportError::Unreadable(
            "the file has no header row".to_owned(),
        ));
    }
    sink.progress(total, total);
    Ok(())
}

/// An xlsx cell, owned for the length of its row.
#[derive(Debug, Clone, PartialEq)]
enum XCell {
    Empty,
    Text(String),
    Num(f64),
    Serial(f64),
    Bool(bool),
}

impl XCell {
    fn view(&self) -> Cell<'_> {
        match self {
            XCell::Empty => Cell::Empty,
            XCell::Text(s) => Cell::Text(s),
            XCell::Num(v) => Cell::Num(*v),
            XCell::Serial(v) => Cell::Serial(*v),
            XCell::Bool(b) => Cell::Bool(*b),
        }
    }

    fn of(d: &calamine::DataRef<'_>) -> XCell {
        use calamine::DataRef as D;
        match d {
            D::Int(i) => XCell::Num(*i as f64),
            D::Float(f) => XCell::Num(*f),
            D::String(s) | D::DateTimeIso(s) | D::DurationIso(s) => XCell::Text(s.clone()),
            D::SharedString(s) => XCell::Text((*s).to_owned()),
            D::Bool(b) => XCell::Bool(*b),
            D::DateTime(t) => XCell::Serial(t.as_f64()),
            D::Error(e) => XCell::Text(format!("#{e:?}")),
            D::Empty => XCell::Empty,
        }
    }
}

/// Read one worksheet of an .xlsx file into `sink`.
pub fn read_xlsx(path: &Path, o: &ReadOptions, sink: &mut dyn Sink) -> Result<(), ImportError> {
    use calamine::Reader as _;
    let file = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
    let bad = |e: &dyn std::fmt::Display| {
        ImportError::Unreadable(format!(
            "not a readable .xlsx workbook (truncated or damaged?): {e}"
        ))
    };
    let mut wb: calamine::Xlsx<_> =
        calamine::Xlsx::new(BufReader::new(file)).map_err(|e| bad(&e))?;
    let sheet = match &o.sheet {
        Some(s) => s.clone(),
        None => wb
            .sheet_names()
            .first()
            .cloned()
            .ok_or_else(|| ImportError::Unreadable("the workbook has no sheet".into()))?,
    };
    let mut cells = wb.worksheet_cells_reader(&sheet).map_err(|e| bad(&e))?;
    let total = u64::from(cells.dimensions().end.0) + 1;
    let header_row = o.skip_rows;
    let mut row: Vec<XCell> = Vec::new();
    let mut row_at: Option<u32> = None;
    let mut width: Option<usize> = None;
    let mut flush =
        |at: u32, row: &mut Vec<XCell>, width: &mut Option<usize>| -> Result<(), ImportError> {
            if at < header_row {
                row.clear();
                return Ok(());
            }
            match width {
                None => {
                    let cols: Vec<String> = row
                        .iter()
                        .map(|c| match c {
                            XCell::Text(s) => s.trim().to_owned(),
                            XCell::Empty => String::new(),
                            XCell::Num(v) | XCell::Serial(v) => v.to_string(),
                            XCell::Bool(b) => b.to_string(),
                        })
                        .collect();
                    *width = Some(cols.len());
                    sink.header(&cols, u64::from(at) + 1)?;
                }
                Some(w) => {
                    let n = row.len();
                    row.resize(n.max(*w), XCell::Empty);
                    let views: Vec<Cell<'_>> = row.iter().map(XCell::view).collect();
                    sink.row(&RowView {
                        no: u64::from(at) + 1,
                        cells: &views,
                        shape: if n > *w {
                            RowShape::Width(n)
                        } else {
                            RowShape::Whole
                        },
                    })?;
                    if at.is_multiple_of(4096) {
                        sink.progress(u64::from(at), total);
                    }
                }
            }
            row.clear();
            Ok(())
        };
    loop {
        let next = cells.next_cell().map_err(|e| bad(&e))?;
        let Some(c) = next else { break };
        let (r, col) = c.get_position();
        if let Some(at) = row_at
            && at != r
        {
            flush(at, &mut row, &mut width)?;
        }
        row_at = Some(r);
        let col = col as usize;
        if row.len() <= col {
            row.resize(col + 1, XCell::Empty);
        }
        row[col] = XCell::of(c.get_value());
    }
    if let Some(at) = row_at {
        flush(at, &mut row, &mut width)?;
    }
    if width.is_none() {
        return Err(ImportError::Unreadable(format!(
            "sheet {sheet:?} has no header row"
        )));
    }
    sink.progress(total, total);
    Ok(())
}
