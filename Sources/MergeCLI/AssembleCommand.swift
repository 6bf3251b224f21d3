import MergeModel
import MergeRecipe
import MergeRuntime

/// `merge assemble OUTPUT`: joins the partitions of `merge run --partition I/N`.
struct AssembleCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "assemble",
    abstract: "Join the partitions that 'merge run --partition I/N' wrote into OUTPUT.",
    discussion: """
      Checks that all N partitions (OUTPUT/partition-I-of-N) are there and finished, of the
      same recipe, seed and layout, with every shard and side file at its size; then replaces
      OUTPUT with the model folder a single 'merge run' writes (the same files, byte for byte),
      in one rename. A missing, unfinished or different partition is an error naming it, and
      OUTPUT is left as it was.
      """,
    arguments: [output.definition])

  static let output = Option.positional("output", help: "The folder the partitions were run into.")

  var output: String

  init(_ arguments: ParsedArguments) throws(UsageError) {
    output = try arguments.value(Self.output)
  }

  func run(console: Console) -> Int32 {
    do {
      let summary = try Assembly.assemble(output)
      console.out(
        "\(output): \(summary.partitions) partitions assembled, \(summary.shards) shard\(summary.shards == 1 ? "" : "s"), \(formatBytes(summary.bytes))\n"
      )
      return ExitCode.success
    } catch {
      console.report(.assembleFailed(error.description))
      return ExitCode.failure
    }
  }
}

extension Diagnostic.Message {
  static func assembleFailed(_ reason: String) -> Self { Self("assemble-failed", reason) }
}
