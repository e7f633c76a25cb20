//! Where samples come from.

use core::str;

/// A source of samples, one value per input feature.
pub trait SampleSource {
    /// What can go wrong reading a sample.
    type Error;

    /// Reads the next sample into `sample` (exactly `sample.len()` values). Returns `false` when the
    /// source has run out.
    fn next_sample(&mut self, sample: &mut [f32]) -> Result<bool, Self::Error>;
}

/// Why a text line did not give a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LineError<E> {
    /// The reader failed.
    Io(E),
    /// A line is longer than the line buffer.
    TooLong {
        /// Line number, from 1.
        line: u32,
    },
    /// A value is not a number, or the line is not UTF-8.
    Parse {
        /// Line number, from 1.
        line: u32,
    },
    /// A line has a different number of values than the model has features.
    Width {
        /// Line number, from 1.
        line: u32,
        /// Values expected.
        expected: usize,
        /// Values found.
        got: usize,
    },
}

/// Samples as text lines from any `embedded-io` reader (a UART, or bytes in flash): values separated by
/// commas or spaces, one sample per line. Empty lines and lines starting with `#` are skipped; `\r` is
/// ignored. `N` is the longest line in bytes.
pub struct LineSource<R, const N: usize = 256> {
    reader: R,
    line: heapless::Vec<u8, N>,
    number: u32,
}

impl<R, const N: usize> LineSource<R, N> {
    /// Reads lines from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: heapless::Vec::new(),
            number: 0,
        }
    }

    /// Gives the reader back.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

impl<R: embedded_io::Read, const N: usize> LineSource<R, N> {
    /// Reads one line into the buffer; `false` at the end of input with nothing read.
    fn read_line(&mut self) -> Result<bool, LineError<R::Error>> {
        self.line.clear();
        self.number += 1;
        let mut byte = [0u8; 1];
        let mut any = false;
        loop {
            if self.reader.read(&mut byte).map_err(LineError::Io)? == 0 {
                return Ok(any);
            }
            any = true;
            match byte[0] {
                b'\n' => return Ok(true),
                b'\r' => {}
                b => self
                    .line
                    .push(b)
                    .map_err(|_| LineError::TooLong { line: self.number })?,
            }
        }
    }
}

impl<R: embedded_io::Read, const N: usize> LineSource<R, N> {
    /// Reads the next line's values into `values` (exactly `values.len()` of them), parsed as `T`:
    /// `f32` for a float model's samples, `i16` for an integer-only model's fixed-point samples (parsing
    /// an integer links no floating-point code). Returns `false` when the reader has run out.
    pub fn next_values<T: str::FromStr>(
        &mut self,
        values: &mut [T],
    ) -> Result<bool, LineError<R::Error>> {
        loop {
            if !self.read_line()? {
                return Ok(false);
            }
            let line = self.number;
            let text = str::from_utf8(&self.line).map_err(|_| LineError::Parse { line })?;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let mut got = 0;
            for field in text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty())
            {
                let value = field.parse().map_err(|_| LineError::Parse { line })?;
                if let Some(slot) = values.get_mut(got) {
                    *slot = value;
                }
                got += 1;
            }
            if got != values.len() {
                return Err(LineError::Width {
                    line,
                    expected: values.len(),
                    got,
                });
            }
            return Ok(true);
        }
    }
}

impl<R: embedded_io::Read, const N: usize> SampleSource for LineSource<R, N> {
    type Error = LineError<R::Error>;

    fn next_sample(&mut self, sample: &mut [f32]) -> Result<bool, Self::Error> {
        self.next_values(sample)
    }
}

/// Adapts a non-blocking embedded-hal serial receiver (`embedded_hal_nb::serial::Read<u8>`, what most
/// HALs' UART receivers implement) into a blocking `embedded_io::Read` for [`LineSource`]. It waits for
/// the first byte, then returns what has arrived without waiting further.
pub struct NbReader<R>(pub R);

impl<R: embedded_hal_nb::serial::ErrorType> embedded_io::ErrorType for NbReader<R> {
    type Error = NbError<R::Error>;
}

/// A receive error of an [`NbReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NbError<E>(pub E);

#[cfg(feature = "defmt")]
impl<E: embedded_hal_nb::serial::Error> defmt::Format for NbError<E> {
    fn format(&self, f: defmt::Formatter<'_>) {
        use embedded_hal_nb::serial::ErrorKind;
        let kind = match self.0.kind() {
            ErrorKind::Overrun => "overrun",
            ErrorKind::FrameFormat => "framing",
            ErrorKind::Parity => "parity",
            ErrorKind::Noise => "noise",
            _ => "other",
        };
        defmt::write!(f, "serial receive error ({})", kind)
    }
}

impl<E: embedded_hal_nb::serial::Error> embedded_io::Error for NbError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<R: embedded_hal_nb::serial::Read<u8>> embedded_io::Read for NbReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            let byte = if n == 0 {
                nb::block!(self.0.read()).map_err(NbError)?
            } else {
                match self.0.read() {
                    Ok(byte) => byte,
                    Err(nb::Error::WouldBlock) => break,
                    Err(nb::Error::Other(e)) => return Err(NbError(e)),
                }
            };
            *slot = byte;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(
        text: &str,
        width: usize,
    ) -> Result<([[f32; 3]; 4], usize), LineError<core::convert::Infallible>> {
        let mut source = LineSource::<_, 32>::new(text.as_bytes());
        let mut out = [[0.0; 3]; 4];
        let mut n = 0;
        while n < out.len() && source.next_sample(&mut out[n][..width])? {
            n += 1;
        }
        Ok((out, n))
    }

    #[test]
    fn lines_with_commas_spaces_comments_and_crlf() {
        let (out, n) = samples("# kpis\r\n1,2,3\r\n\n 4 5\t6\n7, 8 ,9", 3).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            out[..3],
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
        );
    }

    #[test]
    fn bad_lines_name_their_line() {
        assert_eq!(
            samples("1,2,3\n1,x,3\n", 3).err(),
            Some(LineError::Parse { line: 2 })
        );
        assert_eq!(
            samples("1,2\n", 3).err(),
            Some(LineError::Width {
                line: 1,
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            samples("1,2,3,4\n", 3).err(),
            Some(LineError::Width {
                line: 1,
                expected: 3,
                got: 4
            })
        );
        let long = "1.0000000000000000000000000000000,2,3\n";
        assert_eq!(samples(long, 3).err(), Some(LineError::TooLong { line: 1 }));
        assert_eq!(
            samples("\u{ff}\n", 1).err(),
            Some(LineError::Parse { line: 1 })
        );
    }

    #[test]
    fn integer_lines_parse_without_floats_and_refuse_out_of_range_values() {
        let mut source = LineSource::<_, 32>::new("8192,-4096 0\n1.5,0,0\n40000,0,0\n".as_bytes());
        let mut row = [0i16; 3];
        assert_eq!(source.next_values(&mut row), Ok(true));
        assert_eq!(row, [8192, -4096, 0]);
        assert_eq!(
            source.next_values(&mut row),
            Err(LineError::Parse { line: 2 })
        );
        assert_eq!(
            source.next_values(&mut row),
            Err(LineError::Parse { line: 3 })
        );
        assert_eq!(source.next_values(&mut row), Ok(false));
    }

    /// A receiver that has bytes ready in bursts, with `WouldBlock` between them.
    struct Bursts<'a>(&'a [Option<u8>]);

    impl embedded_hal_nb::serial::ErrorType for Bursts<'_> {
        type Error = embedded_hal_nb::serial::ErrorKind;
    }

    impl embedded_hal_nb::serial::Read<u8> for Bursts<'_> {
        fn read(&mut self) -> nb::Result<u8, Self::Error> {
            let (first, rest) = self.0.split_first().ok_or(nb::Error::Other(
                embedded_hal_nb::serial::ErrorKind::Overrun,
            ))?;
            self.0 = rest;
            first.ok_or(nb::Error::WouldBlock)
        }
    }

    #[test]
    fn a_non_blocking_receiver_feeds_lines() {
        let bytes = [
            Some(b'1'),
            None,
            None,
            Some(b','),
            Some(b'2'),
            None,
            Some(b'\n'),
        ];
        let mut source = LineSource::<_, 16>::new(NbReader(Bursts(&bytes)));
        let mut sample = [0.0; 2];
        assert_eq!(source.next_sample(&mut sample), Ok(true));
        assert_eq!(sample, [1.0, 2.0]);
        // The receiver then reports an overrun.
        assert!(matches!(
            source.next_sample(&mut sample),
            Err(LineError::Io(_))
        ));
    }
}
