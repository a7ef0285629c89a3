//! `[[serial_line]]`: RS-485 lines and their framing.

use super::*;

impl Validator<'_> {
    pub(super) fn serial_lines(
        &mut self,
        raw: &RawConfig,
    ) -> BTreeMap<String, (SerialLine, Defined)> {
        let mut out: BTreeMap<String, (SerialLine, Defined)> = BTreeMap::new();
        for item in &raw.serial_lines {
            if let Some(line) = self.serial_line(item) {
                let here = (item.src.path.clone(), item.src.locate(item.span.start).0);
                if let Some((_, (file, l))) = out.get(&line.name) {
                    let name_span = item
                        .raw
                        .name
                        .as_ref()
                        .map(|n| n.span())
                        .unwrap_or(item.span.clone());
                    self.push(
                        item.diag(
                            name_span,
                            format!("serial_line {:?}", line.name),
                            "duplicate serial line name",
                        )
                        .help(format!(
                            "first defined at {}:{l}; rename one of them",
                            file.display()
                        )),
                    );
                    continue;
                }
                out.insert(line.name.clone(), (line, here));
            }
        }
        out
    }

    pub(super) fn serial_line(&mut self, item: &Item<RawSerialLine>) -> Option<SerialLine> {
        let r = &item.raw;
        let Some(name) = &r.name else {
            self.missing(
                item,
                "serial_line",
                "name",
                "add `name = \"line1\"`; devices refer to it with `line = \"line1\"`",
            );
            return None;
        };
        let label = format!("serial_line {:?}", name.get_ref());
        let path = match &r.path {
            Some(p) if !p.get_ref().trim().is_empty() => PathBuf::from(p.get_ref()),
            Some(p) => {
                self.push(
                    item.diag(
                        p.span(),
                        format!("{label} › path"),
                        "empty serial device path",
                    )
                    .help("e.g. \"/dev/ttyUSB0\" or \"/dev/serial/by-id/…\""),
                );
                return None;
            }
            None => {
                self.missing(
                    item,
                    &label,
                    "path",
                    "add `path = \"/dev/ttyUSB0\"` (prefer the stable /dev/serial/by-id/… name)",
                );
                return None;
            }
        };
        let mut ok = true;
        let baud = match &r.baud {
            None => 19_200,
            Some(b) if (50..=4_000_000).contains(b.get_ref()) => *b.get_ref() as u32,
            Some(b) => {
                self.push(
                    item.diag(
                        b.span(),
                        format!("{label} › baud"),
                        format!("impossible baud rate {}", b.get_ref()),
                    )
                    .help("common Modbus RTU rates: 9600, 19200, 38400, 57600, 115200"),
                );
                ok = false;
                19_200
            }
        };
        let parity = match r
            .parity
            .as_ref()
            .map(|p| (p, p.get_ref().to_ascii_lowercase()))
        {
            None => Parity::Even,
            Some((_, p)) if p == "none" || p == "n" => Parity::None,
            Some((_, p)) if p == "even" || p == "e" => Parity::Even,
            Some((_, p)) if p == "odd" || p == "o" => Parity::Odd,
            Some((p, _)) => {
                self.push(
                    item.diag(
                        p.span(),
                        format!("{label} › parity"),
                        format!("unknown parity {:?}", p.get_ref()),
                    )
                    .help("use \"none\", \"even\" or \"odd\" (the Modbus default is \"even\")"),
                );
                ok = false;
                Parity::Even
            }
        };
        let data_bits = match &r.data_bits {
            None => 8,
            Some(b) if *b.get_ref() == 8 => 8,
            Some(b) => {
                self.push(
                    item.diag(b.span(), format!("{label} › data_bits"), format!("{} data bits is impossible for Modbus RTU", b.get_ref()))
                        .help("Modbus RTU always uses 8 data bits (7 is only used by Modbus ASCII); remove the key or set it to 8"),
                );
                ok = false;
                8
            }
        };
        let stop_bits = match &r.stop_bits {
            None => 1,
            Some(b) if matches!(b.get_ref(), 1 | 2) => *b.get_ref() as u8,
            Some(b) => {
                self.push(
                    item.diag(
                        b.span(),
                        format!("{label} › stop_bits"),
                        format!("{} stop bits is impossible", b.get_ref()),
                    )
                    .help("use 1 or 2 (Modbus specifies 2 when parity is \"none\")"),
                );
                ok = false;
                1
            }
        };
        let mut line = SerialLine {
            name: name.get_ref().clone(),
            path,
            baud,
            parity,
            data_bits,
            stop_bits,
            inter_frame_delay: Duration::ZERO,
            unit_backoff: Backoff {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(60),
                jitter: 0.3,
            },
        };
        let min = line.min_inter_frame_delay();
        line.inter_frame_delay = match &r.inter_frame_delay {
            None => min,
            Some(d)
                if d.get_ref().0 + Duration::from_micros(1) >= min
                    && d.get_ref().0 <= Duration::from_secs(1) =>
            {
                d.get_ref().0
            }
            Some(d) => {
                self.push(
                    item.diag(d.span(), format!("{label} › inter_frame_delay"), format!(
                        "{} is impossible at {baud} baud",
                        humantime::format_duration(d.get_ref().0)
                    ))
                    .help(format!(
                        "Modbus RTU needs at least 3.5 character times between frames ({}µs here) and at most 1s; remove the key to use the minimum",
                        min.as_micros()
                    )),
                );
                ok = false;
                min
            }
        };
        line.unit_backoff.initial = self.duration(
            item,
            &format!("{label} › unit_backoff_initial"),
            &r.unit_backoff_initial,
            line.unit_backoff.initial,
            (Duration::from_millis(10), Duration::from_secs(3600)),
        );
        line.unit_backoff.max = self.duration(
            item,
            &format!("{label} › unit_backoff_max"),
            &r.unit_backoff_max,
            line.unit_backoff.max,
            (Duration::from_millis(10), Duration::from_secs(86_400)),
        );
        ok.then_some(line)
    }
}
