import Foundation
import MergeCompiler
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeRuntime

/// A loaded tensor: dtype, shape and values as f32.
struct LoadedTensor {
  var dtype: DType
  var shape: [Int]
  var values: [Float]
}

/// Every tensor of a model folder, decoded.
func loadTensors(_ folder: String) throws -> [String: LoadedTensor] {
  let weights = try ModelFolder(path: folder).openWeights()
  var out: [String: LoadedTensor] = [:]
  for t in weights.tensors {
    out[t.name] = LoadedTensor(
      dtype: t.dtype, shape: t.shape, values: try weights.tensor(t.name).floats())
  }
  return out
}

struct MergeFailure: Error, CustomStringConvertible {
  var description: String
}

/// Checks, resolves and runs a recipe file into `output`.
@discardableResult
func runRecipe(
  _ path: String, output: String, threads: Int = 2, seed: UInt64 = 0, shardSize: Int = 0,
  schedule: Schedule = Schedule()
) throws -> MergePlan {
  let report = RecipeChecker.check(path: path)
  guard !report.hasErrors, let recipe = report.recipe, let stage = recipe.stages.first else {
    throw MergeFailure(description: "check failed: \(report.diagnostics.map(\.message.text))")
  }
  let (plan, diagnostics) = Resolver.resolve(stage: stage, report: report, file: path)
  guard let plan else {
    throw MergeFailure(description: "resolve failed: \(diagnostics.map(\.message.text))")
  }
  let text = try String(contentsOfFile: path, encoding: .utf8)
  var options = RunOptions(threads: threads, seed: seed, shardSize: shardSize)
  options.schedule = schedule
  _ = try MergeRunner.run(plan: plan, recipeText: text, output: output, options: options)
  return plan
}

/// Every file in a folder with its bytes.
func folderBytes(_ folder: String) throws -> [String: Data] {
  var out: [String: Data] = [:]
  for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
    out[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
  }
  return out
}

/// A recipe workspace: a temporary folder with `models/` linked to the tiny Llama models.
final class RecipeWorkspace: Sendable {
  let directory = TemporaryDirectory()
  init() { directory.link("models", to: Repository.tinyLlama) }
  func recipe(_ text: String, name: String = "recipe.yml") -> String { directory.write(name, text) }
  func path(_ name: String) -> String { directory.path + "/" + name }
}
