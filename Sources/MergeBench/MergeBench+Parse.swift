import Dispatch
import Foundation
import MergeCompiler
import MergeModel
import MergeRecipe

extension MergeBench {
  /// Front-end scaling: a safetensors header of `--tensors` entries (default 1M), a YAML merge
  /// key of `--keys` keys and a `models:` list of `--models` entries (default 100k each), each
  /// generated, then read as `merge` reads it (the header opened as a model's weights, the
  /// recipes checked as `merge check` checks them); prints the seconds of each against the
  /// 2-second target and exits 1 when one misses it.
  static func parse(args: [String]) {
    let tensors = Int(option(args, "--tensors") ?? "") ?? 1_000_000
    let keys = Int(option(args, "--keys") ?? "") ?? 100_000
    let models = Int(option(args, "--models") ?? "") ?? 100_000
    let dir = NSTemporaryDirectory() + "merge-bench-parse-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var missed = false
    func report(_ what: String, seconds: Double, target: Bool = true) {
      guard target else {
        print(String(format: "%@: %.2f s", what, seconds))
        return
      }
      let verdict = seconds < 2 ? "within" : "MISSES"
      print(String(format: "%@: %.2f s (%@ the 2 s target)", what, seconds, verdict))
      if seconds >= 2 { missed = true }
    }
    do {
      let header = try writeHeader(tensors: tensors, to: dir + "/model.safetensors")
      let start = now()
      let file = try SafetensorsFile(path: dir + "/model.safetensors")
      let weights = try ModelWeights(files: [file])
      report(
        "safetensors header of \(weights.tensors.count) tensors (\(header / 1_000_000) MB) read and validated",
        seconds: now() - start)
      // The recipes name a one-tensor model in their own folder.
      let recipes = dir + "/recipes"
      try FileManager.default.createDirectory(atPath: recipes, withIntermediateDirectories: true)
      _ = try writeHeader(tensors: 1, to: recipes + "/model.safetensors")
      try "{\"num_hidden_layers\": 1}".write(
        toFile: recipes + "/config.json", atomically: true, encoding: .utf8)
      for (what, text) in [
        ("merge key of \(keys) keys", recipeWithMergeKey(keys: keys)),
        ("models: list of \(models) entries", recipeWithModels(models)),
      ] {
        let start = now()
        var options = CompileOptions()
        options.phase = .resolution
        let compilation = Compiler.compile(text: text, file: recipes + "/r.yml", options: options)
        report(
          "\(what) parsed and checked (\(compilation.diagnostics.count) findings)",
          seconds: now() - start)
      }
      // The same model checked through resolution (its tensors are named for 1,000 layers):
      // finding each layer's tensors was a scan of every tensor per layer.
      let layers = min(1_000, tensors)
      try "{\"num_hidden_layers\": \(layers)}".write(
        toFile: dir + "/config.json", atomically: true, encoding: .utf8)
      var resolution = CompileOptions()
      resolution.phase = .resolution
      let resolveStart = now()
      let resolved = Compiler.compile(
        text: "merge_method: linear\nmodels:\n  - model: .\n    parameters: {weight: 1}\n",
        file: dir + "/r.yml", options: resolution)
      report(
        "that model, \(layers) layers, checked and resolved (\(resolved.plan?.tensors.count ?? 0) tensor plans)",
        seconds: now() - resolveStart, target: false)
    } catch {
      print("parse benchmark failed: \(error)")
      exit(1)
    }
    if missed { exit(1) }
  }

  /// A header of `count` one-element F32 tensors and their data; returns the header's bytes.
  static func writeHeader(tensors count: Int, to path: String) throws -> Int {
    var json = "{"
    json.reserveCapacity(count * 72)
    for i in 0..<count {
      if i > 0 { json += "," }
      json += "\"model.layers.\(i % 1_000).t\(i).weight\":"
      json += "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\(4 * i),\(4 * i + 4)]}"
    }
    json += "}"
    var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian, Array.init)
    bytes += Array(json.utf8)
    bytes += [UInt8](repeating: 0, count: 4 * count)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return json.utf8.count
  }

  /// A linear recipe whose top-level parameters merge in an anchored mapping of `keys` keys.
  static func recipeWithMergeKey(keys: Int) -> String {
    var text = "defaults: &defaults\n"
    for k in 0..<keys { text += "  k\(k): 1\n" }
    text += "merge_method: linear\nmodels:\n  - model: .\n    parameters: {weight: 1}\n"
    text += "parameters:\n  <<: *defaults\n"
    return text
  }

  /// A linear recipe listing the same model `count` times.
  static func recipeWithModels(_ count: Int) -> String {
    var text = "merge_method: linear\nmodels:\n"
    for _ in 0..<count { text += "  - model: .\n    parameters: {weight: 1}\n" }
    return text
  }
}
