import MergeModel
import MergeRecipe

/// `merge inspect PATH`: lists the tensors of a model folder or safetensors file.
struct InspectCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "List the tensors of a model folder or safetensors file.",
    discussion: """
      Reads safetensors headers only (never tensor data) and validates them: every failure
      names the file and the tensor. Prints one line per tensor (name, dtype, shape), then the
      totals: tensors, parameters, bytes and layers.
      """,
    arguments: [path.definition, json.definition])

  static let path = Option.positional("path", help: "A model folder, or a .safetensors file.")
  static let json = Option.flag(
    "json", help: "Print JSON: tensors, parameters, bytes, layers, metadata.")

  var path: String
  var json: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    path = try arguments.value(Self.path)
    json = try arguments.value(Self.json)
  }

  func run(console: Console) -> Int32 {
    let weights: ModelWeights
    do {
      weights = try Self.open(path)
    } catch {
      console.report(.cannotInspect(error))
      return ExitCode.failure
    }
    let tensors = weights.tensors
    let layers = TensorNaming.layerCount(of: tensors.map(\.name))
    if json {
      var metadata: [(String, JSONValue)] = []
      for file in weights.files {
        for (k, v) in file.header.metadata where !metadata.contains(where: { $0.0 == k }) {
          metadata.append((k, .string(v)))
        }
      }
      let value = JSONValue.object([
        (
          "tensors",
          .array(
            tensors.map {
              .object([
                ("name", .string($0.name)), ("dtype", .string($0.dtype.rawValue)),
                ("shape", .array($0.shape.map { .integer($0) })),
              ])
            })
        ),
        ("parameters", .integer(weights.parameterCount)),
        ("bytes", .integer(weights.byteCount)),
        ("layers", .integer(layers)),
        ("metadata", .object(metadata)),
      ])
      console.out(value.formatted() + "\n")
      return ExitCode.success
    }
    let width = tensors.map(\.name.count).max() ?? 0
    var out = ""
    for t in tensors {
      out += t.name + String(repeating: " ", count: width - t.name.count + 2)
      out += t.dtype.rawValue + String(repeating: " ", count: 8 - t.dtype.rawValue.count)
      out += "[" + t.shape.map(String.init).joined(separator: ", ") + "]\n"
    }
    out += "\(grouped(tensors.count)) tensors, \(grouped(weights.parameterCount)) parameters, "
    out += "\(grouped(weights.byteCount)) bytes, \(layers) layers\n"
    // The provenance a merge output carries (the first shard's; every shard has the same).
    for (key, value) in weights.files.first?.header.metadata ?? []
    where key.hasPrefix("merge_") {
      out += "\(key): \(value)\n"
    }
    console.out(out)
    return ExitCode.success
  }

  /// Opens a folder (index or model.safetensors; config.json optional) or a single file.
  static func open(_ path: String) throws(ModelError) -> ModelWeights {
    switch FileSystem.kind(of: path) {
    case .missing: throw .notFound(path: path)
    case .file: return try ModelWeights(files: [try SafetensorsFile.open(path)])
    case .other: throw .notAModel(path: path, reason: "it is not a file or folder")
    case .directory:
      if FileSystem.kind(of: FileSystem.join(path, "config.json")) == .file {
        return try ModelFolder(path: path).openWeights()
      }
      let index = FileSystem.join(path, ModelFolder.indexFileName)
      if FileSystem.kind(of: index) == .file {
        let map = try ModelFolder.readIndex(index)
        var files: [SafetensorsFile] = []
        for shard in Set(map.values).sorted() {
          let p = FileSystem.join(path, shard)
          guard FileSystem.kind(of: p) == .file else {
            throw .badIndex(
              path: index, reason: "it names shard '\(shard)', which is not in the folder")
          }
          files.append(try SafetensorsFile(path: p))
        }
        return try ModelWeights(files: files, weightMap: map, indexPath: index)
      }
      let single = FileSystem.join(path, ModelFolder.singleFileName)
      if FileSystem.kind(of: single) == .file {
        return try ModelWeights(files: [try SafetensorsFile(path: single)])
      }
      let pickle = FileSystem.join(path, ModelFolder.pickleFileName)
      if FileSystem.kind(of: pickle) == .file {
        return try ModelWeights(files: [try SafetensorsFile.open(pickle)])
      }
      throw .notAModel(
        path: path,
        reason: "it has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    }
  }
}

extension Diagnostic.Message {
  fileprivate static func cannotInspect(_ error: ModelError) -> Self {
    Self("unusable-model", error.description)
  }
}
