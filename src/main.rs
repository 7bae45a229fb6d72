//! The `ferrofold` command line.

mod device;
mod predict_af2;
mod predict_igfold;
mod search_cmd;
mod templates_cmd;

// Model runs allocate and free tensors of tens of MB per layer; mimalloc keeps those pages
// mapped between layers where the system allocator returns them (and page-faults them back).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`), and then every partly used 2 MiB region is resident whole:
/// AlphaFold2's 93 M parameters, spread over such regions with the activations freed
/// between them, cost ~120 MiB more RSS than they hold. Without THP, loading and running
/// are also no slower (fewer 2 MiB pages to zero). Applies to mappings made before the
/// call too; best effort (a kernel without the flag just keeps THP).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

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
    /// Search a template library (AlphaFold2 templates) and list the chosen templates.
    SearchTemplates(Box<templates_cmd::SearchTemplatesArgs>),
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
    /// Worker threads (default: all cores; at most four per core).
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
    /// AlphaFold2 with a FASTA input: search this template library (`ferrofold db
    /// build-templates`) for up to 4 templates (models 1 and 2 read them).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// With --templates: leave out entries released after this date (YYYY-MM-DD).
    #[arg(long, requires = "templates")]
    max_template_date: Option<String>,
    /// With --templates: PDB ids (1abc) or chains (1abc_A) to leave out, comma-separated, or a
    /// file of them.
    #[arg(long, requires = "templates")]
    exclude_templates: Option<String>,
    /// AlphaFold2: recycling iterations after the first (default: the model's, 3).
    #[arg(long)]
    recycles: Option<usize>,
    /// AlphaFold2: also write <name>.outputs.npz (atom positions, logits, representations).
    #[arg(long)]
    save_outputs: bool,
    /// Compute device: auto (GPU 0 if this build has CUDA and a GPU is present, else the
    /// CPU), cpu, or cuda / cuda:N (builds with the `cuda` feature).
    #[arg(long, default_value = "auto")]
    device: device::DeviceSpec,
    /// fp32, tf32 or bf16 (default: bf16 on a GPU, fp32 on the CPU, the only one it takes).
    /// For the CUDA backend, tf32 puts matrix products on TF32 tensor cores (JAX's default on
    /// NVIDIA GPUs; fp32 storage) and bf16 stores values in bf16 with matrix products on bf16
    /// tensor cores; sums are fp32 always.
    #[arg(long)]
    precision: Option<device::Precision>,
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
    /// A template library for AlphaFold2 from a folder of mmCIF/PDB files (.gz too).
    BuildTemplates {
        /// Folder of .cif/.mmcif/.pdb/.ent files, optionally gzipped.
        dir: PathBuf,
        /// Template library file to write.
        db: PathBuf,
    },
    /// Write one template library chain as PDB (residues numbered along its sequence).
    ExportTemplate {
        /// Template library.
        db: PathBuf,
        /// Entry id, e.g. 1abc_A.
        id: String,
        /// PDB file to write.
        out: PathBuf,
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

/// Checks, before anything runs, that every record name of `input` makes a safe file name
/// in `out` with each of `exts`, with no directory in the way, and that no two records'
/// names differ only in case (their outputs would overwrite each other, on a
/// case-insensitive file system too). Names are quoted with escapes: a header may hold
/// anything.
fn check_record_names<'a>(
    input: &std::path::Path,
    out: &std::path::Path,
    names: impl IntoIterator<Item = &'a str>,
    exts: &[&str],
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashMap::new();
    for name in names {
        if let Some(earlier) = seen.insert(name.to_lowercase(), name) {
            anyhow::bail!(
                "{}: records {earlier:?} and {name:?} name the same output files",
                input.display()
            );
        }
        for ext in exts {
            let path = ferrofold_io::atomic::safe_output_path(out, name, ext)?;
            if path.is_dir() {
                anyhow::bail!(
                    "record {name:?}: {} is a directory in the way of its output",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Creates `dir` if needed and checks that files can be written in it.
fn prepare_output_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("output folder {} is not writable", dir.display()))?;
    Ok(())
}

/// Sizes the global thread pool (default: all cores). More than four threads per core
/// only adds switching (thousands of threads stall the machine), so that is refused.
fn set_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        if n == 0 || n > 4 * cores {
            anyhow::bail!(
                "--threads {n}: give 1 to {} ({cores} cores here)",
                4 * cores
            );
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot set the thread count")?;
    }
    Ok(())
}

fn predict(args: &PredictArgs) -> anyhow::Result<()> {
    set_threads(args.threads)?;
    let model = args.model.to_ascii_lowercase();
    if model == "igfold" {
        // An option IgFold cannot use is a mistake worth saying, not one to ignore.
        let af2_only = [
            ("--params", args.params.is_some()),
            ("--features", args.features.is_some()),
            ("--features-pkl", args.features_pkl.is_some()),
            ("--msa", args.msa.is_some()),
            ("--db", args.db.is_some()),
            ("--seed", args.seed != 0),
            ("--deterministic", args.deterministic),
            ("--templates", args.templates.is_some()),
            ("--recycles", args.recycles.is_some()),
            ("--save-outputs", args.save_outputs),
        ];
        let given: Vec<&str> = af2_only.iter().filter(|o| o.1).map(|o| o.0).collect();
        if !given.is_empty() {
            anyhow::bail!(
                "{} {} for AlphaFold2 models (model_1 … model_5); IgFold takes none",
                given.join(", "),
                if given.len() == 1 { "is" } else { "are" }
            );
        }
        let input = args
            .input
            .clone()
            .context("IgFold needs a FASTA file of antibodies")?;
        return predict_igfold::run(&predict_igfold::Options {
            input,
            out: args.out.clone(),
            weights: args.weights.clone(),
            device: args.device,
            precision: args.precision,
        });
    }
    if args.weights.is_some() {
        anyhow::bail!("--weights is for IgFold; AlphaFold2 reads --params");
    }
    let config = ModelConfig::by_name(&model).map_err(|_| {
        anyhow::anyhow!(
            "unknown model `{}`: igfold, or an AlphaFold2 model: model_1 … model_5, \
             optionally with _ptm",
            args.model
        )
    })?;
    predict_af2::run(args, config)
}

fn main() {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict(args) => predict(&args),
        Command::Search(args) => set_threads(args.threads).and_then(|()| search_cmd::run(&args)),
        Command::Db {
            action: DbAction::Build { fasta, db },
        } => search_cmd::db_build(&fasta, &db),
        Command::Db {
            action: DbAction::BuildTemplates { dir, db },
        } => templates_cmd::db_build_templates(&dir, &db),
        Command::Db {
            action: DbAction::ExportTemplate { db, id, out },
        } => templates_cmd::export_template(&db, &id, &out),
        Command::SearchTemplates(args) => {
            set_threads(args.threads).and_then(|()| templates_cmd::run_search(&args))
        }
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
