import Foundation
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler

/// Models whose config.json, tensor names or index disagree with one another: errors at check
/// time, where they once crashed, hung, or silently dropped layers.
@Suite struct ModelShapeTests {
  /// A model of `layers` layers of one [4, 4] tensor each, plus an embedding and a norm.
  static func tensors(layers: Int, name: (Int) -> String = { "model.layers.\($0).mlp.weight" })
    -> [(String, [Int])]
  {
    [("model.embed_tokens.weight", [8, 4])] + (0..<layers).map { (name($0), [4, 4]) }
      + [("model.norm.weight", [4])]
  }

  /// Checks a linear merge of model `a` with itself-like model `b`, as `merge check` does.
  func check(_ directory: TemporaryDirectory, extra: String = "") -> Compilation {
    let recipe = directory.write(
      "r.yml",
      "merge_method: linear\nmodels:\n  - {model: a, parameters: {weight: 1}}\n  - {model: b, parameters: {weight: 1}}\n"
        + extra)
    var options = CompileOptions()
    options.phase = .resolution
    return Compiler.compile(path: recipe, options: options)
  }

  @Test(
    "a layer count that is negative, enormous, not an integer, or that the tensors contradict",
    arguments: [
      ("-3", "num_hidden_layers is -3; a layer count is from 0 to 10000"),
      ("1e15", "num_hidden_layers is 1000000000000000; a layer count is from 0 to 10000"),
      ("\"eight\"", "num_hidden_layers is not an integer"),
      (
        "8",
        "num_hidden_layers is 8, but the tensors hold layers 0 to 3; merging would invent layers"
      ),
      (
        "2", "num_hidden_layers is 2, but the tensors hold layers 0 to 3; merging would drop layers"
      ),
    ])
  func layerCounts(_ value: String, _ reason: String) throws {
    let directory = TemporaryDirectory()
    writeModelFolder(
      directory, "a", config: "{\"num_hidden_layers\": \(value)}", tensors: Self.tensors(layers: 4))
    writeModelFolder(
      directory, "b", config: "{\"num_hidden_layers\": 4}", tensors: Self.tensors(layers: 4))
    let compilation = check(directory)
    let messages = compilation.diagnostics.map(\.message.text)
    #expect(messages == ["\(directory.path)/a/config.json: invalid config.json: \(reason)"])
  }

  @Test("a tensor named for a layer past any model's is an error, however large the number")
  func hugeLayerIndex() throws {
    for index in ["10000", "1000000000000", "9223372036854775807", "99999999999999999999999"] {
      let directory = TemporaryDirectory()
      writeModelFolder(
        directory, "a", config: "{}",
        tensors: Self.tensors(layers: 2) + [("model.layers.\(index).mlp.weight", [4, 4])])
      writeModelFolder(directory, "b", config: "{}", tensors: Self.tensors(layers: 2))
      let messages = check(directory).diagnostics.map(\.message.text)
      #expect(
        messages == [
          "\(directory.path)/a/model.safetensors: tensor 'model.layers.\(index).mlp.weight': it names layer \(index); merge handles at most 10000 layers"
        ])
    }
  }

  @Test("a layer range past the tensors' layers of a model without a layer count")
  func hugeLayerRangeWithoutCount() throws {
    let directory = TemporaryDirectory()
    writeModelFolder(directory, "a", config: "{}", tensors: Self.tensors(layers: 2))
    let recipe = directory.write(
      "r.yml",
      "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 1000000000000]}]\n"
    )
    var options = CompileOptions()
    options.phase = .resolution
    let messages = Compiler.compile(path: recipe, options: options).diagnostics.map(\.message.text)
    #expect(
      messages == [
        "layer_range [0, 1000000000000] goes past the last layer of 'a', which has 2 layers (0 to 1)"
      ])
  }

  @Test("an index that leaves out tensors its shards hold is an error, not dropped layers")
  func partialIndex() throws {
    let directory = TemporaryDirectory()
    let path = writeModelFolder(
      directory, "a", config: "{\"num_hidden_layers\": 4}", tensors: Self.tensors(layers: 4))
    try FileManager.default.moveItem(
      atPath: path + "/model.safetensors", toPath: path + "/model-00001-of-00001.safetensors")
    let listed = Self.tensors(layers: 2).map { "\"\($0.0)\": \"model-00001-of-00001.safetensors\"" }
    directory.write(
      "a/model.safetensors.index.json", "{\"weight_map\": {\(listed.joined(separator: ", "))}}")
    writeModelFolder(
      directory, "b", config: "{\"num_hidden_layers\": 4}", tensors: Self.tensors(layers: 4))
    let messages = check(directory).diagnostics.map(\.message.text)
    #expect(
      messages == [
        "the model's weights cannot be used: \(path)/model.safetensors.index.json: it does not list tensor 'model.layers.2.mlp.weight', which model-00001-of-00001.safetensors holds"
      ])
  }

  @Test(
    "two input names that renumber to one output name are an error, not a duplicate header entry")
  func duplicateOutputNames() throws {
    let directory = TemporaryDirectory()
    let names = Self.tensors(layers: 1) + [("model.layers.00.mlp.weight", [4, 4])]
    writeModelFolder(directory, "a", config: "{\"num_hidden_layers\": 1}", tensors: names)
    writeModelFolder(directory, "b", config: "{\"num_hidden_layers\": 1}", tensors: names)
    let compilation = check(directory)
    #expect(
      compilation.diagnostics.map(\.message.text) == [
        "two output tensors would be named 'model.layers.0.mlp.weight', from input tensors 'model.layers.0.mlp.weight' and 'model.layers.00.mlp.weight'"
      ])
    #expect(compilation.diagnostics.first?.range?.start == SourceLocation(line: 2, column: 1))
  }
}
