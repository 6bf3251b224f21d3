import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// A tiny Llama under `name` in `dir`: its weights linked, its config.json edited by `edit`.
func tinyLlama(
  _ source: String, as name: String, in dir: TemporaryDirectory, edit: (inout JSONValue) -> Void
) throws {
  try FileManager.default.createDirectory(
    atPath: dir.path + "/" + name, withIntermediateDirectories: true)
  dir.link(name + "/model.safetensors", to: Repository.tinyLlama + "/\(source)/model.safetensors")
  var config = try JSONValue.parse(
    try FileSystem.read(Repository.tinyLlama + "/\(source)/config.json"))
  edit(&config)
  dir.write(name + "/config.json", config.formatted())
}

@Suite struct OutputConfigTests {
  /// A copy of a tiny Llama whose config has per-layer lists.
  func model(_ source: String, in dir: TemporaryDirectory, name: String, layerTypes: [String])
    throws
  {
    try tinyLlama(source, as: name, in: dir) { config in
      config.set("layer_types", .array(layerTypes.map { .string($0) }))
      config.set(
        "rope_scaling_per_layer", .array([.integer(0), .integer(1), .integer(2), .integer(3)]))
    }
  }

  @Test("a frankenmerge's config.json has its layer count and consistent per-layer lists")
  func frankenmerge() throws {
    let dir = TemporaryDirectory()
    try model("ft0", in: dir, name: "a", layerTypes: ["a0", "a1", "a2", "a3"])
    try model("ft1", in: dir, name: "b", layerTypes: ["b0", "b1", "b2", "b3"])
    let recipe = dir.write(
      "r.yml",
      """
      merge_method: passthrough
      slices:
        - sources: [{model: a, layer_range: [0, 3]}]
        - sources: [{model: b, layer_range: [1, 4]}]
        - sources: [{model: a, layer_range: [3, 4]}]
      """)
    try runRecipe(recipe, output: dir.path + "/out")
    let config = try JSONValue.parse(try FileSystem.read(dir.path + "/out/config.json"))
    #expect(config["num_hidden_layers"]?.intValue == 7)
    #expect(
      config["layer_types"]?.arrayValue?.compactMap(\.stringValue) == [
        "a0", "a1", "a2", "b1", "b2", "b3", "a3",
      ])
    #expect(
      config["rope_scaling_per_layer"]?.arrayValue?.compactMap(\.intValue) == [0, 1, 2, 1, 2, 3, 3])
    #expect(config["dtype"]?.stringValue == "bfloat16")
    // The tensors of the seven layers are the sources' layers, renumbered.
    let out = try loadTensors(dir.path + "/out")
    let b = try loadTensors(Repository.tinyLlama + "/ft1")
    #expect(
      out["model.layers.4.mlp.up_proj.weight"]?.values
        == b["model.layers.2.mlp.up_proj.weight"]?.values)
    #expect(out.keys.filter { $0.hasPrefix("model.layers.6.") }.count == 9)
    #expect(out.count == 3 + 7 * 9)
  }
}

@Suite struct TransformersConfigTests {
  @Test(
    "transformers loads a frankenmerge's config, per-layer lists included",
    .requiresPython("transformers"))
  func transformersLoads() throws {
    let env = "/usr/bin/env"
    let dir = TemporaryDirectory()
    for (name, source) in [("a", "ft0"), ("b", "ft1")] {
      try tinyLlama(source, as: name, in: dir) { config in
        // A Qwen2 config, whose layer_types transformers checks against num_hidden_layers.
        config.set("architectures", .array([.string("Qwen2ForCausalLM")]))
        config.set("model_type", .string("qwen2"))
        config.set("use_sliding_window", .bool(true))
        config.set("sliding_window", .integer(128))
        config.set("max_window_layers", .integer(2))
        config.set(
          "layer_types",
          .array(
            ["full_attention", "full_attention", "sliding_attention", "sliding_attention"].map {
              .string($0)
            }))
      }
    }
    let recipe = dir.write(
      "r.yml",
      """
      merge_method: passthrough
      slices:
        - sources: [{model: a, layer_range: [0, 3]}]
        - sources: [{model: b, layer_range: [1, 4]}]
      """)
    try runRecipe(recipe, output: dir.path + "/out")
    let script = """
      import sys
      from transformers import AutoConfig
      c = AutoConfig.from_pretrained(sys.argv[1])
      print(type(c).__name__, c.num_hidden_layers, ",".join(c.layer_types))
      """
    let result = try runProcess(env, Python.command + ["-c", script, dir.path + "/out"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(
      result.stdout.hasSuffix(
        "Qwen2Config 6 full_attention,full_attention,sliding_attention,full_attention,sliding_attention,sliding_attention\n"
      ))
  }
}
