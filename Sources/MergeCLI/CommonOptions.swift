import MergeCompiler
import MergeHub
import MergeModel
import MergeRecipe
import MergeRuntime

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The arguments several commands take, each declared once.
enum CommonOption {
  static let recipe = Option.positional("recipe", help: "The recipe file (mergekit YAML).")
  static let allowUnknown = Option.flag(
    "allow-unknown", help: "Report unknown keys and parameter names as warnings, not errors.")
  static let allowNonFinite = Option.flag(
    "allow-nonfinite",
    help: "Report an output that is NaN or infinite by construction as a warning, not an error.")
  static let allowCrimes = Option.flag(
    "allow-crimes",
    help: "Merge models of different architectures (mergekit's flag), with a warning.")
  static let hubCache = Option.option(
    "hub-cache", value: "dir",
    help:
      "The Hugging Face hub cache of repository ids (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub).",
    expected: "name a folder", parse: { $0.isEmpty ? nil : HubCache(path: $0) })
  static let loraMergeDType = Option.dtype(
    "lora-merge-dtype",
    help:
      "Round each weight a LoRA adapter changes to this dtype before merging, as mergekit's flag does (default: keep it in float32)."
  )
  static let seed = Option.option(
    "seed", value: "n", help: "Seed of the random methods (default: 0).", parse: { UInt64($0) }
  ).defaulted(to: 0)
  static let threads = Option.option(
    "threads", value: "n", help: "Worker threads (default: all cores).",
    parse: { Int($0).flatMap { (1...4096).contains($0) ? $0 : nil } }
  ).defaulted(to: max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
  static let shardSize = Option.option(
    "shard-size", value: "bytes",
    help: "Most bytes per shard, e.g. 5B or 500M (default: 5B, five billion).",
    parse: positiveByteCount
  ).defaulted(to: ShardLayout.defaultShardSize)
  static let maxMemory = Option.option(
    "max-memory", value: "bytes",
    help:
      "A memory budget, e.g. 300M or 2GiB: the fastest schedule that fits it, or exit 1 up front if none does.",
    parse: positiveByteCount)
  static let cache = Option.option(
    "cache", value: "dir",
    help: "Where reduction results and calibration are kept (default: ~/.cache/merge).",
    expected: "name a folder", parse: { $0.isEmpty ? nil : $0 })
  static let noCache = Option.flag(
    "no-cache", help: "Use no cache folder: recompute every reduction, keep nothing.")

  /// A byte count greater than zero.
  @Sendable static func positiveByteCount(_ text: String) -> Int? {
    parseByteCount(text).flatMap { $0 > 0 ? $0 : nil }
  }
}

/// `--allow-unknown`, `--allow-nonfinite` and `--allow-crimes`: which findings are warnings
/// rather than errors.
enum PolicyArguments {
  static let definitions = [
    CommonOption.allowUnknown.definition, CommonOption.allowNonFinite.definition,
    CommonOption.allowCrimes.definition,
  ]

  static func policy(_ arguments: ParsedArguments) throws(UsageError) -> DiagnosticPolicy {
    DiagnosticPolicy(
      allowUnknown: try arguments.value(CommonOption.allowUnknown),
      allowNonFinite: try arguments.value(CommonOption.allowNonFinite),
      allowCrimes: try arguments.value(CommonOption.allowCrimes))
  }
}

/// The policy arguments and `--hub-cache`: how a recipe is checked.
struct CheckArguments {
  static let definitions = PolicyArguments.definitions + [CommonOption.hubCache.definition]

  /// The compiler's options these arguments set.
  var options = CompileOptions()

  init(_ arguments: ParsedArguments) throws(UsageError) {
    options.policy = try PolicyArguments.policy(arguments)
    if let cache = try arguments.value(CommonOption.hubCache) { options.hubCache = cache }
    // Repositories missing from the cache are read from the Hub (configs and headers only),
    // unless HF_HUB_OFFLINE forbids the network.
    let hub = HubSettings.fromEnvironment()
    if !hub.offline {
      options.remote = HubRemoteReader(client: HubClient(settings: hub), cache: options.hubCache)
    }
  }
}

/// The check arguments and `--seed`: how a recipe compiles.
struct CompileArguments {
  static let definitions =
    CheckArguments.definitions + [
      CommonOption.seed.definition, CommonOption.loraMergeDType.definition,
    ]

  /// The compiler's options these arguments set.
  var options: CompileOptions

  init(_ arguments: ParsedArguments) throws(UsageError) {
    options = try CheckArguments(arguments).options
    options.seed = try arguments.value(CommonOption.seed)
    options.loraMergeDType = try arguments.value(CommonOption.loraMergeDType)
  }
}

/// `--threads`, `--shard-size`, `--max-memory`, `--cache` and `--no-cache`: how a compiled merge
/// runs (and so what `merge plan` prices).
struct ExecutionArguments {
  static let definitions = [
    CommonOption.threads.definition, CommonOption.shardSize.definition,
    CommonOption.maxMemory.definition, CommonOption.cache.definition,
    CommonOption.noCache.definition,
  ]

  var threads: Int
  var shardSize: Int
  var maxMemory: Int?
  /// The cache folder (nil with `--no-cache`).
  var cacheDirectory: String?

  init(_ arguments: ParsedArguments) throws(UsageError) {
    threads = try arguments.value(CommonOption.threads)
    shardSize = try arguments.value(CommonOption.shardSize)
    maxMemory = try arguments.value(CommonOption.maxMemory)
    let directory = try arguments.value(CommonOption.cache)
    if try arguments.value(CommonOption.noCache) {
      if directory != nil {
        throw UsageError(
          message: "'--cache' and '--no-cache' cannot be used together", helpLine: nil)
      }
      cacheDirectory = nil
    } else {
      cacheDirectory = directory ?? ReductionCache.defaultDirectory
    }
  }

  /// The runtime's options: threads, shards, the cache (memory schedule chosen later).
  func runOptions(progress: (@Sendable (RunProgress) -> Void)? = nil) -> RunOptions {
    var options = RunOptions(threads: threads, shardSize: shardSize, progress: progress)
    options.cache = cacheDirectory.map { ReductionCache(directory: $0) }
    return options
  }
}

/// What `merge run` and `merge plan` share: how the recipe compiles, how the merge runs.
struct MergeArguments {
  static let definitions = ExecutionArguments.definitions + CompileArguments.definitions

  var compile: CompileArguments
  var execution: ExecutionArguments

  init(_ arguments: ParsedArguments) throws(UsageError) {
    compile = try CompileArguments(arguments)
    execution = try ExecutionArguments(arguments)
  }
}

/// A byte count: digits, optionally with a decimal unit — `K`, `M`, `B` (thousand, million,
/// billion, as mergekit's `--out-shard-size 5B`), `KB`, `MB`, `GB`, or binary `KiB`, `MiB`,
/// `GiB`.
func parseByteCount(_ text: String) -> Int? {
  var s = text.uppercased()
  let units: [(String, Double)] = [
    ("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("KB", 1e3), ("MB", 1e6),
    ("GB", 1e9), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("B", 1e9),
  ]
  for (suffix, factor) in units where s.hasSuffix(suffix) {
    s.removeLast(suffix.count)
    guard let value = Double(s), value >= 0, value * factor < 9e18 else { return nil }
    return Int(value * factor)
  }
  return Int(s)
}
