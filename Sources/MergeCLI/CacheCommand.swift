import MergeModel
import MergeRecipe
import MergeRuntime

/// `merge cache ls | prune | clear`: the cache folder's entries and their size limit.
struct CacheCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "cache",
    abstract: "List, prune or clear the cache of reduction results.",
    discussion: """
      'ls' prints the cache folder, its entries' count and bytes, and the size limit; 'prune'
      removes the least recently used entries until the rest fit the limit (which 'merge run'
      also does after each run); 'clear' removes every entry. Only entries are removed:
      calibration.json and any other file in the folder are kept. The limit is --limit, else
      MERGE_CACHE_LIMIT, else 4 GB.
      """,
    arguments: [action.definition, CommonOption.cache.definition, limit.definition])

  static let action = Option.positional("action", help: "ls, prune or clear.")
  static let limit = Option.option(
    "limit", value: "bytes", help: "The size limit for prune (default: MERGE_CACHE_LIMIT or 4GB).",
    parse: { parseByteCount($0) })

  enum Action: String { case ls, prune, clear }

  var action: Action
  var directory: String?
  var limit: Int

  init(_ arguments: ParsedArguments) throws(UsageError) {
    let name = try arguments.value(Self.action)
    guard let action = Action(rawValue: name) else {
      throw UsageError(message: "unknown action '\(name)'; use ls, prune or clear", helpLine: nil)
    }
    self.action = action
    directory = try arguments.value(CommonOption.cache) ?? ReductionCache.defaultDirectory
    limit = try arguments.value(Self.limit) ?? ReductionCache.defaultLimit(parse: parseByteCount)
  }

  func run(console: Console) -> Int32 {
    guard let directory else {
      console.report(.noCacheFolder)
      return ExitCode.failure
    }
    let cache = ReductionCache(directory: directory)
    switch action {
    case .ls:
      let entries = cache.entries()
      let bytes = entries.reduce(0) { $0 + $1.bytes }
      console.out(
        "\(directory): \(entries.count) entr\(entries.count == 1 ? "y" : "ies"), \(formatBytes(bytes)) (limit \(formatBytes(limit)))\n"
      )
    case .prune:
      let (removed, bytes) = cache.prune(limit: limit)
      console.out(
        "\(directory): removed \(removed) least recently used entr\(removed == 1 ? "y" : "ies"), \(formatBytes(bytes)); limit \(formatBytes(limit))\n"
      )
    case .clear:
      let (removed, bytes) = cache.clear()
      console.out(
        "\(directory): removed \(removed) entr\(removed == 1 ? "y" : "ies"), \(formatBytes(bytes))\n"
      )
    }
    return ExitCode.success
  }
}

extension Diagnostic.Message {
  static let noCacheFolder = Self(
    "no-cache-folder", "there is no cache folder: set --cache, MERGE_CACHE_DIR or HOME")
}
