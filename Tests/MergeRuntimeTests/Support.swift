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

/// Compiles a recipe file, or fails with its diagnostics.
func compileRecipe(_ path: String, seed: UInt64 = 0, optimize: Bool = true, fuse: Bool = true)
  throws -> CompiledMerge
{
  var options = CompileOptions()
  options.seed = seed
  options.optimize = optimize
  options.fuse = fuse
  let compilation = Compiler.compile(path: path, options: options)
  guard let merge = compilation.merge else {
    throw MergeFailure(
      description: "compilation failed: \(compilation.diagnostics.map(\.message.text))")
  }
  return merge
}

/// Compiles and runs a recipe file into `output`.
@discardableResult
func runRecipe(
  _ path: String, output: String, threads: Int = 2, seed: UInt64 = 0, shardSize: Int = 0,
  schedule: Schedule = Schedule(), optimize: Bool = true
) throws -> MergePlan {
  let merge = try compileRecipe(path, seed: seed, optimize: optimize)
  var options = RunOptions(threads: threads, shardSize: shardSize)
  options.schedule = schedule
  _ = try MergeRunner.run(merge, output: output, options: options)
  return merge.plan
}

/// Every file in a folder with its bytes.
func folderBytes(_ folder: String) throws -> [String: Data] {
  var out: [String: Data] = [:]
  for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
    out[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
  }
  return out
}
