import MergeRuntime

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Arguments several subcommands accept, defined and read in one place.
extension ArgumentDefinition {
  static let threads = option("threads", value: "n", help: "Worker threads (default: all cores).")
  static let seed = option("seed", value: "n", help: "Seed of the random methods (default: 0).")
  static let shardSize = option(
    "shard-size", value: "bytes",
    help: "Most bytes per shard, e.g. 5B or 500M (default: 5B, five billion).")
  static let allowUnknown = flag(
    "allow-unknown", help: "Report unknown keys and parameter names as warnings, not errors.")
}

/// `--threads N` (default: the online cores).
func threadsOption(_ arguments: ParsedArguments) throws(UsageError) -> Int {
  try arguments.integer("threads", in: 1...4096)
    ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}

/// `--shard-size BYTES` (default five billion, as mergekit's `--out-shard-size`).
func shardSizeOption(_ arguments: ParsedArguments) throws(UsageError) -> Int {
  try byteCountOption(arguments, "shard-size") ?? 5_000_000_000
}

/// The cache folder from `--cache DIR` or the default, or nil with `--no-cache`.
func cacheDirectoryOption(_ arguments: ParsedArguments) throws(UsageError) -> String? {
  let directory = arguments.option("cache")
  guard arguments.flag("no-cache") else { return directory ?? ReductionCache.defaultDirectory }
  if directory != nil {
    throw UsageError(message: "'--cache' and '--no-cache' cannot be used together", helpLine: nil)
  }
  return nil
}

/// `--name BYTES`, if given.
func byteCountOption(_ arguments: ParsedArguments, _ name: String) throws(UsageError) -> Int? {
  guard let text = arguments.option(name) else { return nil }
  guard let bytes = parseByteCount(text), bytes > 0 else {
    throw UsageError(
      message: "The value '\(text)' is invalid for '--\(name) <bytes>'", helpLine: nil)
  }
  return bytes
}

/// `--seed N` (default 0).
func seedOption(_ arguments: ParsedArguments) throws(UsageError) -> UInt64 {
  guard let text = arguments.option("seed") else { return 0 }
  guard let s = UInt64(text) else {
    throw UsageError(message: "The value '\(text)' is invalid for '--seed <n>'", helpLine: nil)
  }
  return s
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
