//! `rtu2mqtt read` and `rtu2mqtt write`: one transaction, for checking the wiring.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::bus::{Connection, WriteData, WriteRequest};
use crate::cli::{LineArgs, ReadArgs, WriteArgs};
use crate::codec::Codec;
use crate::config::{Bus, Echo, LineSettings, Table, Timing, Transport, UnitId};
use crate::plan::ReadRequest;

/// The bus of a command that runs a few transactions and ends: each tried once.
pub(super) fn bus(transport: Transport, line: LineSettings, timeout: Duration, echo: Echo) -> Bus {
    Bus {
        transport,
        line,
        timing: Timing {
            timeout,
            frame_gap: Duration::ZERO,
        },
        retries: 0,
        offline_after: 1,
        offline_poll: Duration::ZERO,
        command_timeout: Duration::ZERO,
        echo,
    }
}

async fn open(args: &LineArgs) -> anyhow::Result<(Connection, Timing)> {
    let transport = Transport::parse(&args.port).map_err(anyhow::Error::msg)?;
    let bus = bus(transport, args.line(), args.timeout, args.echo);
    let timing = bus.timing;
    let link = Connection::open(&bus, std::sync::Arc::default())
        .await
        .with_context(|| format!("cannot open {}", args.port))?;
    Ok((link, timing))
}

fn codec(args: &LineArgs) -> Codec {
    Codec {
        kind: args.kind(),
        word_order: args.word_order,
        byte_order: args.byte_order,
        scale: args.scale,
        offset: args.offset,
        ..Codec::default()
    }
}

fn unit(args: &LineArgs) -> anyhow::Result<UnitId> {
    UnitId::new(i64::from(args.unit)).context("unit must be 1..=247")
}

pub async fn read(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let line = &args.line;
    let codec = codec(line);
    let width = codec.width();
    let count = args
        .count
        .checked_mul(width)
        .filter(|c| (1..=line.table.max_read()).contains(c))
        .with_context(|| {
            format!(
                "--count: one read takes 1..={} addresses",
                line.table.max_read()
            )
        })?;
    let request = ReadRequest {
        unit: unit(line)?,
        table: line.table,
        address: line.address,
        count,
    };
    let (mut link, timing) = open(line).await?;
    let data = link.read(&request, timing, 0).await.with_context(|| {
        format!(
            "reading {} {} of unit {}",
            line.table.name(),
            line.address,
            line.unit
        )
    })?;
    let words = data.words();
    for (i, chunk) in words.chunks_exact(usize::from(width)).enumerate() {
        let address = usize::from(line.address) + i * usize::from(width);
        // A NaN is what the wiring check is after as much as a value: said, not fatal.
        match codec.decode(chunk) {
            Ok(value) => println!("[{address}]: {}", codec.format(&value)),
            Err(e) => println!("[{address}]: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    let line = &args.line;
    let codec = codec(line);
    let value = codec.parse(&args.value)?;
    let words = codec.encode(&value)?;
    let data = match (line.table, args.function, words.as_slice()) {
        (Table::Coil, None | Some(5), [word]) => WriteData::Coil(*word != 0),
        (Table::Holding, None | Some(6), [word]) => WriteData::Register(*word),
        (Table::Holding, None | Some(16), _) => WriteData::Registers(words.clone()),
        (Table::Input | Table::Discrete, _, _) => {
            bail!("the {} table cannot be written", line.table.name())
        }
        (_, Some(f), _) => bail!(
            "function {f} cannot write a {} to the {} table",
            codec.kind,
            line.table.name()
        ),
        (Table::Coil, None, _) => bail!("a coil takes one bit"),
    };
    let function = data.function();
    let request = WriteRequest {
        unit: unit(line)?,
        address: line.address,
        data,
    };
    let (mut link, timing) = open(line).await?;
    link.write(&request, timing, 0).await.with_context(|| {
        format!(
            "writing {} {} of unit {}",
            line.table.name(),
            line.address,
            line.unit
        )
    })?;
    println!(
        "wrote {} to {} {} of unit {} (function {function})",
        codec.format(&value),
        line.table.name(),
        line.address,
        line.unit
    );
    Ok(ExitCode::SUCCESS)
}
