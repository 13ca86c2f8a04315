//! Event recordings binned into frames as Tonic's
//! `ToFrame(sensor_size, n_time_bins=T)` does (Tonic 1.x,
//! `tonic/functional/to_frame.py` and `SliceByTimeBins` in
//! `tonic/slicers.py`, overlap 0).
//!
//! A recording is events `(x, y, t, p)` with integer fields, sorted by `t`;
//! the sensor is `sensor_size = (W, H, P)`. Its frames are `[T, P, H, W]`
//! counts (float32 here; Tonic counts in `int16`, and so do these before
//! converting, wrapping past 32767 as numpy does):
//!
//! - the bin width is `w = (t_last - t_first) // T`, integer division, with
//!   `t_first`, `t_last` the timestamps of the first and last event;
//! - bin `k` (`0 <= k < T`) holds the events with
//!   `t_first + k·w <= t < t_first + (k+1)·w` (Tonic's `searchsorted` of the
//!   window edges), so an event at or after `t_first + T·w` is in no frame:
//!   the last event is dropped whenever `T` divides `t_last - t_first`, and
//!   when the recording is shorter than `T` time units (`w = 0`) every frame
//!   is empty;
//! - an event adds 1 at `[k, p, y, x]`; a negative coordinate counts from
//!   the end, as numpy's indexing does (`p = -1` is polarity `P - 1`);
//! - a single-polarity sensor (`P = 1`) takes events of one polarity value,
//!   whatever it is (Tonic sets it to 0) and refuses two;
//! - no events: `T` empty frames.
//!
//! Differences, all on inputs Tonic does not define or rejects: timestamps
//! out of order are refused here (Tonic's `searchsorted` needs them sorted
//! and gives arbitrary bins otherwise), and a coordinate outside the sensor
//! is refused for every event (Tonic only notices it for the events it puts
//! in a frame). Tonic's empty recording gives zeros of shape
//! `[T, P, W, H]`, which is `[T, P, H, W]` for a square sensor.

/// Why a recording cannot be binned: what is wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub String);

/// The events of one recording, field by field (as the `.npz` reader gives
/// a structured array's fields).
#[derive(Clone, Copy, Debug)]
pub struct Events<'a> {
    pub x: &'a [f64],
    pub y: &'a [f64],
    pub t: &'a [f64],
    pub p: &'a [f64],
}

/// A field value as an integer, refusing a fraction or a value beyond 2^53.
fn integer(field: &str, i: usize, v: f64) -> Result<i64, FrameError> {
    if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
        Ok(v as i64)
    } else {
        Err(FrameError(format!(
            "event {i} has {field} = {v}, which is not an integer: the fields x, y, t, p are integers"
        )))
    }
}

/// A coordinate as numpy indexes: `-size..size`, negatives from the end.
fn coordinate(field: &str, i: usize, v: i64, size: usize, axis: &str) -> Result<usize, FrameError> {
    let s = size as i64;
    match v {
        v if (0..s).contains(&v) => Ok(v as usize),
        v if (-s..0).contains(&v) => Ok((v + s) as usize),
        v => Err(FrameError(format!(
            "event {i} has {field} = {v}, outside the sensor's {axis} of {size} (sensor_size is [W, H, P]): \
             give the sensor size the recording was made with"
        ))),
    }
}

/// The flat `[T, P, H, W]` cell of every event that lands in a frame, in
/// event order (see the module doc).
pub fn frame_cells(ev: Events<'_>, sensor: [usize; 3], bins: usize) -> Result<Vec<u32>, FrameError> {
    let [w_size, h_size, p_size] = sensor;
    let n = ev.t.len();
    if [ev.x.len(), ev.y.len(), ev.p.len()] != [n; 3] {
        return Err(FrameError("the fields x, y, t, p have different lengths".into()));
    }
    if sensor.contains(&0) || bins == 0 {
        return Err(FrameError(format!("sensor size {sensor:?} and {bins} bins: each must be at least 1")));
    }
    let cells = bins * p_size * h_size * w_size;
    if u32::try_from(cells).is_err() {
        return Err(FrameError(format!("{bins} frames of sensor {sensor:?} are {cells} values, more than 2^32")));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut t = Vec::with_capacity(n);
    for (i, &v) in ev.t.iter().enumerate() {
        let ti = integer("t", i, v)?;
        if let Some(&prev) = t.last()
            && ti < prev
        {
            return Err(FrameError(format!(
                "the timestamps are not sorted (event {i} has t = {ti}, after t = {prev}): Tonic bins recordings \
                 sorted by time; sort each with `ev = ev[np.argsort(ev[\"t\"], kind=\"stable\")]`"
            )));
        }
        t.push(ti);
    }
    let p_first = integer("p", 0, ev.p[0])?;
    let (t0, t_last) = (i128::from(t[0]), i128::from(t[n - 1]));
    let width = (t_last - t0) / bins as i128;
    let mut out = Vec::with_capacity(n);
    for (i, &ti) in t.iter().enumerate() {
        let x = coordinate("x", i, integer("x", i, ev.x[i])?, w_size, "width W")?;
        let y = coordinate("y", i, integer("y", i, ev.y[i])?, h_size, "height H")?;
        let p_raw = integer("p", i, ev.p[i])?;
        let p = if p_size == 1 {
            if p_raw != p_first {
                return Err(FrameError(format!(
                    "the sensor has one polarity (P = 1) but the events have two (p = {p_first} and {p_raw}, \
                     event {i}): give sensor_size P = 2, or merge the polarities"
                )));
            }
            0
        } else {
            coordinate("p", i, p_raw, p_size, "polarities P")?
        };
        if width == 0 {
            continue;
        }
        let k = (i128::from(ti) - t0) / width;
        if k < bins as i128 {
            out.push((((k as usize * p_size + p) * h_size + y) * w_size + x) as u32);
        }
    }
    Ok(out)
}

/// The frames of one recording, `[bins, P, H, W]` flat (see the module doc).
pub fn to_frame(ev: Events<'_>, sensor: [usize; 3], bins: usize) -> Result<Vec<f32>, FrameError> {
    let cells = frame_cells(ev, sensor, bins)?;
    let mut counts = vec![0i16; bins * sensor.iter().product::<usize>()];
    for c in cells {
        counts[c as usize] = counts[c as usize].wrapping_add(1);
    }
    Ok(counts.into_iter().map(f32::from).collect())
}

/// Recordings kept as the frame cells of their events, binned into dense
/// frames when a batch is made.
#[derive(Clone, Debug, PartialEq)]
pub struct EventFrames {
    /// `[W, H, P]`.
    pub sensor: [usize; 3],
    /// `T`, the number of frames.
    pub bins: usize,
    /// Recording `i`'s cells are `cells[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    cells: Vec<u32>,
}

impl EventFrames {
    pub fn new(sensor: [usize; 3], bins: usize) -> EventFrames {
        EventFrames { sensor, bins, offsets: vec![0], cells: Vec::new() }
    }

    /// Adds a recording.
    pub fn push(&mut self, ev: Events<'_>) -> Result<(), FrameError> {
        self.cells.extend(frame_cells(ev, self.sensor, self.bins)?);
        self.offsets.push(self.cells.len());
        Ok(())
    }

    /// The number of recordings.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `n` recordings.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.offsets.truncate(n + 1);
        self.cells.truncate(self.offsets[n]);
    }

    /// The recordings from `n` on (the last `len() - n`).
    pub fn skip(&self, n: usize) -> EventFrames {
        let n = n.min(self.len());
        let base = self.offsets[n];
        EventFrames {
            sensor: self.sensor,
            bins: self.bins,
            offsets: self.offsets[n..].iter().map(|o| o - base).collect(),
            cells: self.cells[base..].to_vec(),
        }
    }

    /// The `[T, P, H, W]` values of recording `i` (below [`Self::len`]),
    /// appended to `out`.
    pub fn frames_into(&self, i: usize, out: &mut Vec<f64>) {
        let mut counts = vec![0i16; self.bins * self.sensor.iter().product::<usize>()];
        for &c in &self.cells[self.offsets[i]..self.offsets[i + 1]] {
            counts[c as usize] = counts[c as usize].wrapping_add(1);
        }
        out.extend(counts.into_iter().map(f64::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(x: &[f64], y: &[f64], t: &[f64], p: &[f64], sensor: [usize; 3], bins: usize) -> Result<Vec<f32>, String> {
        to_frame(Events { x, y, t, p }, sensor, bins).map_err(|e| e.0)
    }

    #[test]
    fn bins_follow_tonics_integer_window() {
        // t from 0 to 10 in 3 bins: w = 3, bins [0,3) [3,6) [6,9); t = 9 and
        // t = 10 are in none.
        let t = [0.0, 2.0, 3.0, 8.0, 9.0, 10.0];
        let f = frames(&[0.0; 6], &[0.0; 6], &t, &[0.0; 6], [1, 1, 1], 3).unwrap();
        assert_eq!(f, [2.0, 1.0, 1.0]);
        // T divides the duration: the last event is dropped.
        let f = frames(&[0.0; 3], &[0.0; 3], &[5.0, 6.0, 7.0], &[0.0; 3], [1, 1, 1], 2).unwrap();
        assert_eq!(f, [1.0, 1.0]);
        // Shorter than T: every frame is empty; a single event too.
        assert_eq!(frames(&[0.0; 2], &[0.0; 2], &[0.0, 2.0], &[0.0; 2], [1, 1, 1], 3).unwrap(), [0.0; 3]);
        assert_eq!(frames(&[0.0], &[0.0], &[7.0], &[0.0], [1, 1, 1], 2).unwrap(), [0.0; 2]);
        assert_eq!(frames(&[], &[], &[], &[], [2, 1, 1], 2).unwrap(), [0.0; 4]);
    }

    #[test]
    fn layout_is_t_p_h_w_and_negative_indices_count_from_the_end() {
        // Sensor W=3, H=2, P=2; two bins of width 5.
        let (x, y, t, p) = ([2.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 5.0, 10.0], [1.0, -1.0, 0.0]);
        let f = frames(&x, &y, &t, &p, [3, 2, 2], 2).unwrap();
        let mut want = vec![0.0; 24];
        want[11] = 1.0; // k 0, p 1, y 1, x 2: ((0·2 + 1)·2 + 1)·3 + 2
        want[18] = 1.0; // k 1, p -1 = 1, y 0, x 0: ((1·2 + 1)·2 + 0)·3 + 0
        assert_eq!(f, want);
        // One polarity: any single value, two are refused.
        assert_eq!(frames(&[0.0; 2], &[0.0; 2], &[0.0, 2.0], &[1.0; 2], [1, 1, 1], 1).unwrap(), [1.0]);
        let e = frames(&[0.0; 2], &[0.0; 2], &[0.0, 2.0], &[0.0, 1.0], [1, 1, 1], 1).unwrap_err();
        assert!(e.contains("one polarity (P = 1) but the events have two"), "{e}");
    }

    #[test]
    fn bad_recordings_are_refused_with_the_fix() {
        let e = frames(&[0.0; 2], &[0.0; 2], &[3.0, 1.0], &[0.0; 2], [1, 1, 1], 1).unwrap_err();
        assert!(e.contains("not sorted (event 1 has t = 1, after t = 3)") && e.contains("np.argsort"), "{e}");
        let e = frames(&[4.0], &[0.0], &[0.0], &[0.0], [4, 1, 1], 1).unwrap_err();
        assert!(e.contains("event 0 has x = 4, outside the sensor's width W of 4"), "{e}");
        let e = frames(&[0.5], &[0.0], &[0.0], &[0.0], [4, 1, 1], 1).unwrap_err();
        assert!(e.contains("x = 0.5, which is not an integer"), "{e}");
    }

    #[test]
    fn stored_recordings_bin_as_to_frame_and_truncate() {
        let mut ef = EventFrames::new([2, 1, 1], 2);
        ef.push(Events { x: &[0.0, 1.0, 1.0], y: &[0.0; 3], t: &[0.0, 1.0, 4.0], p: &[0.0; 3] }).unwrap();
        ef.push(Events { x: &[], y: &[], t: &[], p: &[] }).unwrap();
        let mut out = Vec::new();
        ef.frames_into(0, &mut out);
        ef.frames_into(1, &mut out);
        assert_eq!(out, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let rest = ef.skip(1);
        assert_eq!(rest.len(), 1);
        let mut out = Vec::new();
        rest.frames_into(0, &mut out);
        assert_eq!(out, [0.0; 4]);
        ef.truncate(1);
        assert_eq!(ef.len(), 1);
    }
}
