/// mergekit-yaml's options, as `merge run` (and `merge` invoked as `mergekit-yaml`) takes them.
///
/// Each of mergekit 0.1.5's options has one entry: the same setting under merge's name, no
/// effect on a CPU tool that never runs model code (accepted with a one-line note), or refused
/// because merge cannot do what it asks. Boolean options come in `--x` and `--no-x` forms, as
/// click declares them; the form that asks for mergekit's default is accepted silently.
enum MergekitCommandLine {
  /// What one mergekit option becomes.
  enum Meaning: Sendable {
    /// merge's own option of that name (a value follows when the option takes one).
    case same(String, takesValue: Bool)
    /// A flag of merge's own.
    case flag(String)
    /// Nothing: the default, or no effect here (with the note, when there is one).
    case ignored(note: String?, takesValue: Bool)
    /// A usage error saying why.
    case refused(String)
  }

  private static let cpu = "merge computes on the CPU, on every core"
  private static let noCode = "merge never runs code from a model repository"

  /// Every mergekit-yaml option, by spelling.
  static let options: [String: Meaning] = [
    "--allow-crimes": .flag("--allow-crimes"),
    "--no-allow-crimes": .ignored(note: nil, takesValue: false),
    "--out-shard-size": .same("--shard-size", takesValue: true),
    "--random-seed": .same("--seed", takesValue: true),
    "--num-threads": .same("--threads", takesValue: true),
    "-j": .same("--threads", takesValue: true),
    "--transformers-cache": .same("--hub-cache", takesValue: true),
    // mergekit-multi's folder for the named stages.
    "--intermediate-dir": .same("--intermediates", takesValue: true),
    "-I": .same("--intermediates", takesValue: true),
    "--copy-tokenizer": .ignored(note: nil, takesValue: false),
    "--no-copy-tokenizer": .flag("--no-copy-tokenizer"),
    "--write-model-card": .ignored(note: nil, takesValue: false),
    "--no-write-model-card": .flag("--no-write-model-card"),
    "--quiet": .flag("--quiet"),
    "--no-quiet": .ignored(note: nil, takesValue: false),
    "--safe-serialization": .ignored(note: nil, takesValue: false),
    "--no-safe-serialization": .refused(
      "merge writes safetensors only; pickled .bin weights can run code when loaded"),
    "--unsafe-truncate-embeddings": .refused(
      "merge does not truncate embeddings to the smallest vocabulary; merge models whose vocabularies agree"
    ),
    "--no-unsafe-truncate-embeddings": .ignored(note: nil, takesValue: false),
    "--lora-merge-cache": .ignored(
      note: "merge needs no folder of merged LoRA models", takesValue: true),
    "--lora-merge-dtype": .same("--lora-merge-dtype", takesValue: true),
    "--trust-remote-code": .ignored(note: noCode, takesValue: false),
    "--no-trust-remote-code": .ignored(note: nil, takesValue: false),
    "--lazy-unpickle": .ignored(note: "merge reads safetensors, mapped lazily", takesValue: false),
    "--no-lazy-unpickle": .ignored(note: nil, takesValue: false),
    "--clone-tensors": .ignored(
      note: "merge writes every tensor's own bytes, a layer used twice included",
      takesValue: false),
    "--no-clone-tensors": .ignored(note: nil, takesValue: false),
    "--cuda": .ignored(note: cpu, takesValue: false),
    "--no-cuda": .ignored(note: nil, takesValue: false),
    "--device": .ignored(note: cpu, takesValue: true),
    "--low-cpu-memory": .ignored(note: cpu, takesValue: false),
    "--no-low-cpu-memory": .ignored(note: nil, takesValue: false),
    "--read-to-gpu": .ignored(note: cpu, takesValue: false),
    "--no-read-to-gpu": .ignored(note: nil, takesValue: false),
    "--multi-gpu": .ignored(note: cpu, takesValue: false),
    "--no-multi-gpu": .ignored(note: nil, takesValue: false),
    "--gpu-rich": .ignored(note: cpu, takesValue: false),
    "--async-write": .ignored(
      note: "merge writes as it computes, on its worker threads", takesValue: false),
    "--no-async-write": .ignored(note: nil, takesValue: false),
    "--write-threads": .ignored(
      note: "merge writes as it computes, on its worker threads", takesValue: true),
    "-v": .ignored(note: "merge has one level of output", takesValue: false),
  ]

  /// `arguments` with mergekit's options rewritten as merge's, and the notes to print about
  /// the ones that have no effect; a refused option is a usage error.
  static func translate(_ arguments: [String]) throws(UsageError) -> (
    arguments: [String], notes: [String]
  ) {
    var out: [String] = []
    var notes: [String] = []
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      index += 1
      if argument == "--" {
        out += arguments[(index - 1)...]
        break
      }
      // `--name=value`, and `-vv` (click counts repeated -v).
      var name = argument
      var inline: String?
      if let eq = argument.firstIndex(of: "="), argument.hasPrefix("--") {
        name = String(argument[..<eq])
        inline = String(argument[argument.index(after: eq)...])
      }
      if name.hasPrefix("-v"), name.dropFirst().allSatisfy({ $0 == "v" }) { name = "-v" }
      guard let meaning = options[name] else {
        out.append(argument)
        continue
      }
      func value() throws(UsageError) -> String {
        if let inline { return inline }
        guard index < arguments.count else {
          throw UsageError(message: "Missing value for '\(name)'", helpLine: nil)
        }
        index += 1
        return arguments[index - 1]
      }
      switch meaning {
      case .same(let ours, let takesValue):
        out.append(ours)
        if takesValue { out.append(try value()) }
      case .flag(let ours):
        out.append(ours)
      case .ignored(let note, let takesValue):
        if takesValue { _ = try value() }
        if let note { notes.append("note: mergekit's \(name) has no effect: \(note)") }
      case .refused(let reason):
        throw UsageError(message: "mergekit's '\(name)' is not supported: \(reason)", helpLine: nil)
      }
    }
    return (out, notes)
  }
}
