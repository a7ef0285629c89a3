//! The row mapper: a file's header and rows to samples in the staging
//! database, or to rejections with their row numbers.

use super::*;

/// Which column of the header holds what.
#[derive(Debug)]
enum Plan {
    Long {
        tag: usize,
        value: usize,
        quality: Option<usize>,
        /// Names in the file → index into `targets`.
        known: HashMap<String, usize>,
    },
    Wide {
        /// (column index, index into `targets`).
        columns: Vec<(usize, usize)>,
    },
}

/// A tag as stored, with its range.
#[derive(Debug, Clone)]
struct Target {
    tag: String,
    min: Option<f64>,
    max: Option<f64>,
}

/// The staging table holds numbers for the tag and the column, not their
/// names: a name per sample made DuckDB copy and compress millions of
/// strings (the names are joined back once, on the windows).
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<String, u32>,
    list: Vec<String>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(i) = self.ids.get(name) {
            return *i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_owned(), i);
        self.list.push(name.to_owned());
        i
    }
}

/// Accepted samples go to the staging database, rejections beside them.
struct Mapper<'c> {
    profile: &'c Profile,
    parser: TimeParser,
    good: Vec<String>,
    samples: duckdb::Appender<'c>,
    rejections: duckdb::Appender<'c>,
    header: Vec<String>,
    time: usize,
    plan: Option<Plan>,
    targets: Vec<Target>,
    /// `targets[i]`'s tag number in the staging table.
    target_ids: Vec<u32>,
    tags: Names,
    sid: u64,
    progress: &'c Progress,
}

pub(super) fn unit_suffix(name: &str) -> (&str, Option<&str>) {
    // `FIC101.PV [m3/h]` or `FIC101.PV (m3/h)`.
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(stripped) = name.trim_end().strip_suffix(close)
            && let Some(i) = stripped.rfind(open)
        {
            return (stripped[..i].trim_end(), Some(stripped[i + 1..].trim()));
        }
    }
    (name, None)
}

impl Mapper<'_> {
    fn find(&self, name: &str) -> Result<usize, ImportError> {
        self.header
            .iter()
            .position(|h| h == name)
            .or_else(|| {
                self.header
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| {
                ImportError::Profile(format!(
                    "column {name:?} is not in the header {:?}",
                    self.header
                ))
            })
    }

    fn target(&mut self, t: Target) -> usize {
        let id = self.tags.id(&t.tag);
        self.target_ids.push(id);
        self.targets.push(t);
        self.targets.len() - 1
    }

    fn reject(
        &mut self,
        row: u64,
        col: Option<&str>,
        reason: &str,
        value: Option<String>,
    ) -> Result<(), ImportError> {
        self.progress.rejections.fetch_add(1, Ordering::Relaxed);
        self.rejections
            .append_row(params![row, col, reason, value])?;
        Ok(())
    }

    fn sample(
        &mut self,
        row: u64,
        col: usize,
        t: usize,
        ts: i64,
        v: f64,
        good: bool,
    ) -> Result<(), ImportError> {
        let (min, max) = (self.targets[t].min, self.targets[t].max);
        if min.is_some_and(|lo| v < lo) || max.is_some_and(|hi| v > hi) {
            let why = format!(
                "value {v} outside the tag's range [{}, {}]",
                min.map_or("-inf".into(), |x| x.to_string()),
                max.map_or("inf".into(), |x| x.to_string())
            );
            let col = self.header.get(col).cloned();
            return self.reject(row, col.as_deref(), &why, Some(v.to_string()));
        }
        self.sid += 1;
        let col = u32::try_from(col).unwrap_or(u32::MAX);
        self.samples
            .append_row(params![self.sid, row, col, self.target_ids[t], ts, v, good])?;
        Ok(())
    }
}

impl source::Sink for Mapper<'_> {
    fn header(&mut self, columns: &[String], _no: u64) -> Result<(), ImportError> {
        self.header = columns.to_vec();
        self.time = self.find(&self.profile.time_column)?;
        let p = self.profile;
        let listed: Vec<Target> = p
            .tags
            .iter()
            .map(|t| Target {
                tag: t.tag.clone().unwrap_or_else(|| t.column.clone()),
                min: t.min,
                max: t.max,
            })
            .collect();
        self.plan = Some(match p.layout {
            Layout::Long => {
                let tag = self.find(p.tag_column.as_deref().unwrap_or(""))?;
                let value = self.find(p.value_column.as_deref().unwrap_or(""))?;
                let quality = p
                    .quality_column
                    .as_deref()
                    .map(|q| self.find(q))
                    .transpose()?;
                let mut known = HashMap::new();
                for (m, t) in p.tags.iter().zip(listed) {
                    let i = self.target(t);
                    known.insert(m.column.clone(), i);
                }
                Plan::Long {
                    tag,
                    value,
                    quality,
                    known,
                }
            }
            Layout::Wide => {
                let mut columns = Vec::new();
                if p.tags.is_empty() {
                    for (i, h) in self.header.clone().iter().enumerate() {
                        if i != self.time && !h.is_empty() {
                            let t = self.target(Target {
                                tag: unit_suffix(h).0.to_owned(),
                                min: None,
                                max: None,
                            });
                            columns.push((i, t));
                        }
                    }
                } else {
                    for (m, t) in p.tags.iter().zip(listed) {
                        let i = self.find(&m.column)?;
                        let t = self.target(t);
                        columns.push((i, t));
                    }
                }
                Plan::Wide { columns }
            }
        });
        Ok(())
    }

    fn row(&mut self, r: &source::RowView<'_>) -> Result<(), ImportError> {
        self.progress.rows.fetch_add(1, Ordering::Relaxed);
        let whole = match r.shape {
            source::RowShape::Whole => None,
            source::RowShape::Truncated => Some(format!(
                "truncated last line ({} of {} cells; the file ends without a line break)",
                r.cells.len(),
                self.header.len()
            )),
            source::RowShape::Width(n) => Some(format!(
                "the row has {n} cells, the header {}",
                self.header.len()
            )),
            source::RowShape::Encoding => Some("not UTF-8 text".to_owned()),
        };
        if let Some(why) = whole {
            return self.reject(r.no, None, &why, None);
        }
        if r.cells.iter().all(|c| *c == Cell::Empty) {
            return self.reject(r.no, None, "empty row", None);
        }
        let cell = |i: usize| r.cells.get(i).copied().unwrap_or(Cell::Empty);
        let tc = cell(self.time);
        let ts = match self.parser.time(tc) {
            Ok(t) => t,
            Err(why) => {
                let col = self.header[self.time].clone();
                return self.reject(r.no, Some(&col), &why, tc.shown());
            }
        };
        let dc = self.profile.decimal_comma;
        match self.plan.take() {
            Some(Plan::Long {
                tag,
                value,
                quality,
                mut known,
            }) => {
                let out = (|| {
                    let name = match cell(tag) {
                        Cell::Text(s) if !s.trim().is_empty() => s.trim(),
                        Cell::Empty | Cell::Text(_) => {
                            let col = self.header[tag].clone();
                            return self.reject(r.no, Some(&col), "empty tag cell", None);
                        }
                        other => {
                            let col = self.header[tag].clone();
                            return self.reject(
                                r.no,
                                Some(&col),
                                "the tag is not text",
                                other.shown(),
                            );
                        }
                    };
                    let t = match known.get(name) {
                        Some(t) => *t,
                        None if self.profile.only_listed_tags => {
                            let col = self.header[tag].clone();
                            return self.reject(
                                r.no,
                                Some(&col),
                                &format!("tag {name:?} is not in the profile"),
                                Some(name.to_owned()),
                            );
                        }
                        None => {
                            let t = self.target(Target {
                                tag: name.to_owned(),
                                min: None,
                                max: None,
                            });
                            known.insert(name.to_owned(), t);
                            t
                        }
                    };
                    let vc = cell(value);
                    let v = match parse::number(vc, dc) {
                        Ok(v) => v,
                        Err(why) => {
                            let col = self.header[value].clone();
                            return self.reject(r.no, Some(&col), &why, vc.shown());
                        }
                    };
                    let good = match quality.map(cell) {
                        None | Some(Cell::Empty) => true,
                        Some(Cell::Text(q)) => {
                            self.good.iter().any(|g| g.eq_ignore_ascii_case(q.trim()))
                        }
                        Some(Cell::Num(q)) => self.good.iter().any(|g| g.parse::<f64>() == Ok(q)),
                        Some(_) => false,
                    };
                    self.sample(r.no, value, t, ts, v, good)
                })();
                self.plan = Some(Plan::Long {
                    tag,
                    value,
                    quality,
                    known,
                });
                out
            }
            Some(Plan::Wide { columns }) => {
                let out = (|| {
                    for &(i, t) in &columns {
                        let c = cell(i);
                        match parse::number(c, dc) {
                            Ok(v) => self.sample(r.no, i, t, ts, v, true)?,
                            Err(why) => {
                                let col = self.header[i].clone();
                                self.reject(r.no, Some(&col), &why, c.shown())?;
                            }
                        }
                    }
                    Ok(())
                })();
                self.plan = Some(Plan::Wide { columns });
                out
            }
            None => Err(ImportError::Unreadable(
                "a data row before the header".into(),
            )),
        }
    }

    fn progress(&mut self, done: u64, total: u64) {
        self.progress.done.store(done, Ordering::Relaxed);
        self.progress.total.store(total, Ordering::Relaxed);
    }
}

/// Read the file into the staging database.
pub(super) fn read_into(
    conn: &duckdb::Connection,
    job: &Job,
    format: Format,
    p: &Progress,
) -> Result<(), ImportError> {
    let profile = &job.profile;
    let mut m = Mapper {
        profile,
        parser: profile.check()?,
        good: if profile.good_quality.is_empty() {
            DEFAULT_GOOD.iter().map(|s| (*s).to_owned()).collect()
        } else {
            profile.good_quality.clone()
        },
        samples: conn.appender("samples")?,
        rejections: conn.appender("rejections")?,
        header: Vec::new(),
        time: 0,
        plan: None,
        targets: Vec::new(),
        target_ids: Vec::new(),
        tags: Names::default(),
        sid: 0,
        progress: p,
    };
    let o = source::ReadOptions {
        delimiter: profile.delimiter(),
        skip_rows: profile.skip_rows,
        sheet: profile.sheet.clone(),
    };
    match format {
        Format::Csv => source::read_csv(&job.file, &o, &mut m)?,
        Format::Xlsx => source::read_xlsx(&job.file, &o, &mut m)?,
    }
    m.samples.flush()?;
    m.rejections.flush()?;
    let mut a = conn.appender("tags")?;
    for (i, name) in m.tags.list.iter().enumerate() {
        a.append_row(params![i as u32, name])?;
    }
    a.flush()?;
    let mut a = conn.appender("columns")?;
    for (i, name) in m.header.iter().enumerate() {
        a.append_row(params![i as u32, name])?;
    }
    a.flush()?;
    Ok(())
}
