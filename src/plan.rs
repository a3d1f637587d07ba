//! Poll plan: which read requests cover which registers, and what they cost on the line.
//!
//! Registers of a device are grouped by table and poll interval. Within a group the plan
//! picks the partition into reads with the least line time: a transaction costs about 20
//! characters (8 request bytes, 5 response overhead bytes, two 3.5-character silences) plus
//! its data, so reading through a short gap is cheaper than a second request, and a long gap
//! is not. `max_read` and `max_gap` bound every read. A dynamic programme over the
//! registers sorted by address finds the optimum (tests check it against brute force).

use std::time::Duration;

use crate::codec::{DecodeError, Value};
use crate::config::{Device, LineSettings, Register, Table, UnitId};

/// One Modbus read transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    pub unit: UnitId,
    pub table: Table,
    pub address: u16,
    pub count: u16,
}

/// Bytes of a read request frame: unit, function, address, count, CRC.
const REQUEST_BYTES: u32 = 8;
/// Bytes of a read response frame besides the data: unit, function, byte count, CRC.
const RESPONSE_OVERHEAD_BYTES: u32 = 5;
/// The 3.5-character silence before the request and before the response.
const SILENCE_CHARS: f64 = 7.0;

impl ReadRequest {
    /// Data bytes of the response.
    pub fn data_bytes(&self) -> u32 {
        data_bytes(self.table, self.count)
    }

    /// Bytes on the wire for request plus response.
    pub fn frame_bytes(&self) -> u32 {
        REQUEST_BYTES + RESPONSE_OVERHEAD_BYTES + self.data_bytes()
    }

    /// Line time of the transaction: both frames and the silences before them. The slave's
    /// turnaround is not included: it is the device's, not the plan's.
    pub fn line_time(&self, line: &LineSettings) -> Duration {
        line.chars(f64::from(self.frame_bytes())) + line.frame_silence() * 2
    }

    /// The one-past-last address (may be 65536).
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.count)
    }
}

fn data_bytes(table: Table, count: u16) -> u32 {
    if table.is_bits() {
        u32::from(count).div_ceil(8)
    } else {
        2 * u32::from(count)
    }
}

/// Line cost of one read of `count` addresses, in characters.
fn cost_chars(table: Table, count: u16) -> f64 {
    f64::from(REQUEST_BYTES + RESPONSE_OVERHEAD_BYTES + data_bytes(table, count)) + SILENCE_CHARS
}

/// A read in the plan: what it asks and which registers of the device it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    pub device: usize,
    pub read: ReadRequest,
    pub interval: Duration,
    /// Its registers have no `poll` of their own: the interval is the device's, which
    /// may change at run time.
    pub follows_device: bool,
    /// The device's extra silence before each request.
    pub frame_gap: Duration,
    /// Indices into the device's registers.
    pub registers: Vec<usize>,
}

impl PollRequest {
    /// A read of one register alone, at the device's interval.
    pub fn single(device_index: usize, device: &Device, register: usize) -> PollRequest {
        let r = &device.registers[register];
        PollRequest {
            device: device_index,
            read: ReadRequest {
                unit: device.unit,
                table: r.table,
                address: r.address,
                count: r.width(),
            },
            interval: r.poll.unwrap_or(device.poll),
            follows_device: r.poll.is_none(),
            frame_gap: device.timing.frame_gap,
            registers: vec![register],
        }
    }

    /// Each of its registers, with its value in the words the read returned or why it
    /// holds none.
    pub fn decode<'a>(
        &'a self,
        device: &'a Device,
        words: &'a [u16],
    ) -> impl Iterator<Item = (usize, Result<Value, DecodeError>)> + 'a {
        self.registers.iter().map(move |&r| {
            let register = &device.registers[r];
            let at = usize::from(register.address - self.read.address);
            (
                r,
                register.codec.decode(words.get(at..).unwrap_or_default()),
            )
        })
    }

    /// The names of its registers, for messages.
    pub fn register_names<'a>(&self, device: &'a Device) -> Vec<&'a str> {
        self.registers
            .iter()
            .map(|&r| device.registers[r].name.as_str())
            .collect()
    }

    /// The values of its registers that hold one.
    pub fn values(&self, device: &Device, words: &[u16]) -> Vec<(usize, Value)> {
        self.decode(device, words)
            .filter_map(|(r, value)| Some((r, value.ok()?)))
            .collect()
    }

    /// Smaller reads of its registers, for a device that refuses this one (exception 2):
    /// the gap-free reads it merged if it reads through gaps (some devices refuse that),
    /// else its two halves (one configured register may be missing on the device). Empty
    /// when it cannot be narrowed: it reads one register (or bits of one word) alone.
    pub fn narrow(&self, device: &Device) -> Vec<PollRequest> {
        // Registers in address order, as runs of those that touch or overlap.
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut run_end = 0;
        for &index in &self.registers {
            let register = &device.registers[index];
            match runs.last_mut() {
                Some(run) if u32::from(register.address) <= run_end => run.push(index),
                _ => runs.push(vec![index]),
            }
            run_end = run_end.max(register.end());
        }
        if runs.len() > 1 {
            return runs.iter().map(|run| self.covering(device, run)).collect();
        }
        // The first address in the second half that is not also in the first.
        let addresses: Vec<u16> = self
            .registers
            .iter()
            .map(|&r| device.registers[r].address)
            .collect();
        let middle = (addresses.len() / 2).max(1);
        let Some(cut) = (middle..addresses.len())
            .chain((1..middle).rev())
            .find(|&at| addresses[at] != addresses[at - 1])
        else {
            return Vec::new();
        };
        let (first, second) = self.registers.split_at(cut);
        vec![self.covering(device, first), self.covering(device, second)]
    }

    /// A read of `registers` alone (in address order), from the first one's address to
    /// the last end among them.
    fn covering(&self, device: &Device, registers: &[usize]) -> PollRequest {
        let first = u32::from(device.registers[registers[0]].address);
        let end = registers
            .iter()
            .map(|&r| device.registers[r].end())
            .max()
            .unwrap_or(first);
        PollRequest {
            read: ReadRequest {
                // Within the original read, so the span fits.
                address: first as u16,
                count: (end - first) as u16,
                ..self.read
            },
            registers: registers.to_vec(),
            ..*self
        }
    }
}

/// The reads of every device.
pub fn plan(devices: &[Device]) -> Vec<PollRequest> {
    devices
        .iter()
        .enumerate()
        .flat_map(|(index, device)| plan_device(index, device))
        .collect()
}

/// The reads of one device, grouped by table and interval, each group cut optimally.
pub fn plan_device(device_index: usize, device: &Device) -> Vec<PollRequest> {
    let mut order: Vec<usize> = (0..device.registers.len()).collect();
    // Registers that follow the device's interval are never merged with one that has its
    // own, even an equal one: the device's may change at run time.
    let group = |r: &Register| (r.table, r.poll.is_none(), r.poll.unwrap_or(device.poll));
    order.sort_by_key(|i| {
        let r = &device.registers[*i];
        (group(r), r.address, r.end())
    });
    let mut requests = Vec::new();
    for group in order.chunk_by(|a, b| group(&device.registers[*a]) == group(&device.registers[*b]))
    {
        let registers: Vec<&Register> = group.iter().map(|i| &device.registers[*i]).collect();
        let table = registers[0].table;
        let cuts = cheapest_cuts(
            &registers,
            device.max_read_for(table),
            device.max_gap,
            table,
        );
        for (start, end) in cuts {
            let first = u32::from(registers[start].address);
            let last = registers[start..end]
                .iter()
                .map(|r| r.end())
                .max()
                .unwrap_or(first);
            requests.push(PollRequest {
                device: device_index,
                read: ReadRequest {
                    unit: device.unit,
                    table,
                    address: registers[start].address,
                    // At most max_read: checked when the cut was chosen.
                    count: (last - first) as u16,
                },
                interval: registers[start].poll.unwrap_or(device.poll),
                follows_device: registers[start].poll.is_none(),
                frame_gap: device.timing.frame_gap,
                registers: group[start..end].to_vec(),
            });
        }
    }
    requests
}

/// Splits registers (sorted by address) into consecutive runs, one read each, with the least
/// total cost. Returns `(start, end)` index ranges.
fn cheapest_cuts(
    registers: &[&Register],
    max_read: u16,
    max_gap: u16,
    table: Table,
) -> Vec<(usize, usize)> {
    let n = registers.len();
    // best[j]: least cost of reading registers[..j], with the start of its last run.
    let mut best: Vec<(f64, usize)> = vec![(f64::INFINITY, 0); n + 1];
    best[0] = (0.0, 0);
    for start in 0..n {
        if !best[start].0.is_finite() {
            continue;
        }
        let first = u32::from(registers[start].address);
        let mut covered_end = registers[start].end();
        for end in start + 1..=n {
            let r = registers[end - 1];
            if end - 1 > start {
                let gap = u32::from(r.address).saturating_sub(covered_end);
                if gap > u32::from(max_gap) {
                    break;
                }
            }
            covered_end = covered_end.max(r.end());
            let span = covered_end - first;
            if span > u32::from(max_read) {
                break;
            }
            // span <= max_read <= 2000 fits u16.
            let cost = best[start].0 + cost_chars(table, span as u16);
            if cost < best[end].0 {
                best[end] = (cost, start);
            }
        }
    }
    let mut cuts = Vec::new();
    let mut end = n;
    while end > 0 {
        let start = best[end].1;
        cuts.push((start, end));
        end = start;
    }
    cuts.reverse();
    cuts
}

impl PollRequest {
    /// Line time of the read with its device's frame gap.
    pub fn line_time(&self, line: &LineSettings) -> Duration {
        self.read.line_time(line) + self.frame_gap
    }
}

/// Line time of one cycle of `requests` (each once).
pub fn cycle_time<'a>(
    requests: impl IntoIterator<Item = &'a PollRequest>,
    line: &LineSettings,
) -> Duration {
    requests.into_iter().map(|r| r.line_time(line)).sum()
}

/// Share of the line the plan keeps busy when every read runs at its interval.
pub fn utilisation(requests: &[PollRequest], line: &LineSettings) -> f64 {
    requests
        .iter()
        .map(|r| r.line_time(line).as_secs_f64() / r.interval.as_secs_f64())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, ValueType};
    use crate::config::{Parity, PublishMode, WriteFunction};

    fn register(address: u16, kind: ValueType, table: Table) -> Register {
        Register {
            name: format!("r{address}"),
            address,
            table,
            codec: Codec {
                kind,
                ..Codec::default()
            },
            unit_of_measurement: None,
            writable: false,
            poll: None,
            publish: PublishMode::Always,
            deadband: 0.0,
            republish: None,
            write_function: WriteFunction::SingleRegister,
            topic: None,
            command_topic: None,
            homeassistant: Default::default(),
        }
    }

    fn device(registers: Vec<Register>, max_read: u16, max_gap: u16) -> Device {
        Device {
            poll_command_topic: None,
            name: "d".into(),
            unit: UnitId::new(1).unwrap(),
            poll: Duration::from_secs(1),
            max_gap,
            max_read,
            max_read_bits: 2000,
            timing: crate::config::Timing {
                timeout: Duration::from_millis(300),
                frame_gap: Duration::ZERO,
            },
            homeassistant: Default::default(),
            registers,
        }
    }

    fn holding(addresses: &[u16]) -> Vec<Register> {
        addresses
            .iter()
            .map(|a| register(*a, ValueType::U16, Table::Holding))
            .collect()
    }

    fn total_cost(requests: &[PollRequest]) -> f64 {
        requests
            .iter()
            .map(|r| cost_chars(r.read.table, r.read.count))
            .sum()
    }

    /// Every way to split the registers into reads that obey the limits, cheapest cost.
    /// Set partitions, not only runs, so the test also shows that runs suffice.
    fn brute_force(device: &Device) -> f64 {
        fn go(device: &Device, rest: &[usize], blocks: &mut Vec<Vec<usize>>, best: &mut f64) {
            let Some((&first, rest)) = rest.split_first() else {
                let mut cost = 0.0;
                for block in blocks.iter() {
                    let regs: Vec<&Register> =
                        block.iter().map(|i| &device.registers[*i]).collect();
                    let start = regs.iter().map(|r| u32::from(r.address)).min().unwrap();
                    let end = regs.iter().map(|r| r.end()).max().unwrap();
                    if end - start > u32::from(device.max_read) {
                        return;
                    }
                    let mut sorted = regs.clone();
                    sorted.sort_by_key(|r| r.address);
                    let mut covered = sorted[0].end();
                    for r in &sorted[1..] {
                        if u32::from(r.address).saturating_sub(covered) > u32::from(device.max_gap)
                        {
                            return;
                        }
                        covered = covered.max(r.end());
                    }
                    cost += cost_chars(Table::Holding, (end - start) as u16);
                }
                *best = best.min(cost);
                return;
            };
            for i in 0..blocks.len() {
                blocks[i].push(first);
                go(device, rest, blocks, best);
                blocks[i].pop();
            }
            blocks.push(vec![first]);
            go(device, rest, blocks, best);
            blocks.pop();
        }
        let indices: Vec<usize> = (0..device.registers.len()).collect();
        let mut best = f64::INFINITY;
        go(device, &indices, &mut Vec::new(), &mut best);
        best
    }

    #[test]
    fn reference_device_is_one_read() {
        let d = device(holding(&[0, 1, 2, 3]), 125, 16);
        let plan = plan_device(0, &d);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].read.address, plan[0].read.count), (0, 4));
        // 8 + 13 bytes at 11 bits and 9600 baud, plus 7 characters of silence.
        let line = LineSettings {
            baud: 9600,
            parity: Parity::Even,
            data_bits: 8,
            stop_bits: 1,
        };
        let time = cycle_time(&plan, &line);
        assert_eq!(time.as_micros(), 32_083);
    }

    #[test]
    fn short_gaps_are_read_through_long_ones_are_not() {
        // A gap of 9 registers costs 18 characters, less than another read (20).
        let d = device(holding(&[0, 10]), 125, 16);
        assert_eq!(plan_device(0, &d).len(), 1);
        // A gap of 10 costs exactly as much; 11 costs more.
        let d = device(holding(&[0, 12]), 125, 16);
        assert_eq!(plan_device(0, &d).len(), 2);
        // max_gap forbids what would be cheaper.
        let d = device(holding(&[0, 5]), 125, 3);
        assert_eq!(plan_device(0, &d).len(), 2);
    }

    #[test]
    fn max_read_bounds_every_read() {
        let d = device(holding(&(0..300).collect::<Vec<_>>()), 125, 16);
        let plan = plan_device(0, &d);
        assert!(plan.iter().all(|r| r.read.count <= 125));
        assert_eq!(
            plan.iter().map(|r| u32::from(r.read.count)).sum::<u32>(),
            300
        );
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn fewest_requests_is_not_least_line_time() {
        // With max_read 10, a greedy fill from the left reads 0..=9 then 10..=17: two reads
        // of 18 addresses. Two reads are needed either way, but 0 alone and then 8..=17
        // carry 7 addresses fewer.
        let d = device(holding(&[0, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]), 10, 16);
        let plan = plan_device(0, &d);
        assert_eq!(total_cost(&plan), brute_force(&d));
        let counts: Vec<_> = plan
            .iter()
            .map(|r| (r.read.address, r.read.count))
            .collect();
        assert_eq!(counts, [(0, 1), (8, 10)]);
    }

    #[test]
    fn optimal_against_brute_force_on_hand_made_maps() {
        let maps: [(&[u16], u16, u16); 7] = [
            (&[0, 1, 2, 3], 125, 16),
            (&[0, 10, 20, 30, 40], 125, 16),
            (&[0, 3, 20, 24, 26, 40, 52], 125, 16),
            (&[0, 3, 20, 24, 26, 40, 52], 8, 16),
            (&[5, 6, 7, 30, 31, 45], 4, 2),
            (&[0, 11, 22, 33, 44, 55, 66], 30, 12),
            (&[100, 101, 109, 118, 127, 136], 20, 9),
        ];
        for (addresses, max_read, max_gap) in maps {
            let d = device(holding(addresses), max_read, max_gap);
            let plan = plan_device(0, &d);
            assert_eq!(total_cost(&plan), brute_force(&d), "{addresses:?}");
            let covered: usize = plan.iter().map(|r| r.registers.len()).sum();
            assert_eq!(covered, addresses.len());
        }
    }

    #[test]
    fn wide_registers_and_views_are_covered() {
        let mut regs = vec![
            register(0, ValueType::F32, Table::Holding),
            register(1, ValueType::U16, Table::Holding),
            register(4, ValueType::U32, Table::Holding),
        ];
        regs.push(register(0, ValueType::Bool, Table::Coil));
        let d = device(regs, 125, 16);
        let plan = plan_device(0, &d);
        let reads: Vec<_> = plan
            .iter()
            .map(|r| (r.read.table, r.read.address, r.read.count))
            .collect();
        assert_eq!(reads, [(Table::Coil, 0, 1), (Table::Holding, 0, 6)]);
    }

    #[test]
    fn bits_of_one_register_are_one_read() {
        let mut regs: Vec<Register> = [0, 3, 15]
            .into_iter()
            .map(|bit| Register {
                name: format!("bit{bit}"),
                codec: Codec {
                    bit: crate::codec::Bit::new(bit),
                    ..register(7, ValueType::Bool, Table::Holding).codec
                },
                ..register(7, ValueType::Bool, Table::Holding)
            })
            .collect();
        regs.push(register(8, ValueType::U16, Table::Holding));
        // Even where no gap may be read through.
        let d = device(regs, 125, 0);
        let plan = plan_device(0, &d);
        let reads: Vec<_> = plan
            .iter()
            .map(|r| (r.read.address, r.read.count, r.registers.len()))
            .collect();
        assert_eq!(reads, [(7, 2, 4)]);
        // Narrowed, the bits stay one read of their word, which narrows no further.
        let parts = plan[0].narrow(&d);
        let reads: Vec<_> = parts
            .iter()
            .map(|r| (r.read.address, r.read.count, r.registers.len()))
            .collect();
        assert_eq!(reads, [(7, 1, 3), (8, 1, 1)]);
        assert_eq!(parts[0].narrow(&d), []);
    }

    #[test]
    fn tables_and_intervals_are_never_mixed() {
        let mut regs = holding(&[0, 1]);
        regs.push(register(2, ValueType::U16, Table::Input));
        regs[1].poll = Some(Duration::from_secs(10));
        let plan = plan_device(0, &device(regs, 125, 16));
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn narrowing_gives_the_merged_reads_then_halves_down_to_one_register() {
        let d = device(holding(&[0, 1, 5, 6, 9]), 125, 16);
        let plan = plan_device(0, &d);
        assert_eq!(plan.len(), 1);
        let shape = |parts: Vec<PollRequest>| -> Vec<(u16, u16, usize)> {
            parts
                .iter()
                .map(|p| (p.read.address, p.read.count, p.registers.len()))
                .collect()
        };
        assert_eq!(shape(plan[0].narrow(&d)), [(0, 2, 2), (5, 2, 2), (9, 1, 1)]);

        let d = device(holding(&[0, 1, 2, 3, 4]), 125, 16);
        let plan = plan_device(0, &d);
        assert_eq!(shape(plan.clone()), [(0, 5, 5)]);
        let halves = plan[0].narrow(&d);
        assert_eq!(shape(halves.clone()), [(0, 2, 2), (2, 3, 3)]);
        assert_eq!(shape(halves[1].narrow(&d)), [(2, 1, 1), (3, 2, 2)]);
        assert_eq!(shape(halves[1].narrow(&d)[0].narrow(&d)), []);
    }

    proptest::proptest! {
        /// However the device refuses, narrowing ends, in reads that each cover their
        /// registers and cannot be narrowed further, every register in exactly one.
        #[test]
        fn prop_narrowing_ends_in_reads_of_one_address(
            layout in proptest::collection::vec((0u16..60, proptest::bool::ANY), 1..24),
        ) {
            let registers = layout
                .iter()
                .map(|&(address, wide)| {
                    register(address, if wide { ValueType::U32 } else { ValueType::U16 }, Table::Holding)
                })
                .collect();
            let d = device(registers, 125, 16);
            let mut leaves = Vec::new();
            let mut reads = plan_device(0, &d);
            let mut steps = 0;
            while let Some(read) = reads.pop() {
                steps += 1;
                proptest::prop_assert!(steps < 10_000);
                for &r in &read.registers {
                    let register = &d.registers[r];
                    proptest::prop_assert!(register.address >= read.read.address);
                    proptest::prop_assert!(register.end() <= read.read.end());
                }
                let parts = read.narrow(&d);
                if parts.is_empty() {
                    leaves.push(read);
                } else {
                    proptest::prop_assert!(parts.iter().all(|p| p.registers.len() < read.registers.len()
                        || p.read.count < read.read.count));
                    reads.extend(parts);
                }
            }
            let mut covered: Vec<usize> = leaves.iter().flat_map(|l| l.registers.clone()).collect();
            covered.sort_unstable();
            proptest::prop_assert_eq!(covered, (0..layout.len()).collect::<Vec<_>>());
            for leaf in &leaves {
                let first = d.registers[leaf.registers[0]].address;
                proptest::prop_assert!(leaf.registers.iter().all(|&r| d.registers[r].address == first));
            }
        }
    }
}
