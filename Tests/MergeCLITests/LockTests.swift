import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeCLI
@testable import MergeRuntime

/// `merge lock`, `merge run --locked`, `merge verify` and the provenance an output carries.
@Suite struct LockTests {
  /// A folder with copies of base, ft0 and ft1 (so that a test can change one) and a TIES
  /// recipe `r.yml` over them.
  func workspace() throws -> (TemporaryDirectory, recipe: String) {
    let dir = TemporaryDirectory()
    for m in ["base", "ft0", "ft1"] {
      try FileManager.default.createDirectory(
        atPath: dir.path + "/" + m, withIntermediateDirectories: true)
      for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        try FileManager.default.copyItem(
          atPath: Repository.tinyLlama + "/\(m)/\(f)", toPath: dir.path + "/\(m)/\(f)")
      }
    }
    let recipe = dir.write(
      "r.yml",
      """
      # a TIES merge, locked
      merge_method: ties
      base_model: base
      models:
        - {model: ft0, parameters: {weight: 1, density: 0.5}}
        - {model: ft1, parameters: {weight: 0.5, density: 0.7}}
      dtype: float32
      """)
    return (dir, recipe)
  }

  /// Flips the bits of byte `offset` from the end of the file at `path`.
  func flip(_ path: String, fromEnd offset: Int = 100) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[bytes.count - offset] ^= 0xFF
    try Data(bytes).write(to: URL(fileURLWithPath: path))
  }

  func text(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

  @Test("merge lock names every input file by size and SHA-256, the seed and the recipe")
  func lock() throws {
    let (dir, recipe) = try workspace()
    let result = merge("lock", recipe, "--seed", "7")
    #expect(result.status == 0, "\(result.err)")
    #expect(result.out.hasPrefix(dir.path + "/r.lock: 12 input files, "))
    let lock = try MergeLock(path: dir.path + "/r.lock")
    #expect(lock.seed == 7)
    #expect(lock.tool == "merge " + MergeCommand.version)
    #expect(lock.sources.map(\.resolved) == ["base", "ft0", "ft1"])
    let weights = try #require(lock.inputs.first { $0.name == "ft0/model.safetensors" })
    let bytes = [UInt8](
      try Data(contentsOf: URL(fileURLWithPath: dir.path + "/ft0/model.safetensors")))
    #expect(weights.size == bytes.count)
    #expect(weights.sha256 == SHA256.hex(bytes))
    #expect(lock.inputs.map(\.name) == lock.inputs.map(\.name).sorted())
    #expect(lock.outputs.isEmpty)
    // The recipe's digest ignores comments and formatting, not values.
    #expect(
      MergeLock.recipeDigest("merge_method: ties # x\nbase_model:   base\n")
        == MergeLock.recipeDigest("base_model: base\nmerge_method: 'ties'\n"))
    #expect(
      MergeLock.recipeDigest("t: 0.5\n") != MergeLock.recipeDigest("t: 0.6\n"))
  }

  @Test("runs on one thread and on two write the same lock file")
  func threads() throws {
    let (dir, recipe) = try workspace()
    #expect(merge("lock", recipe).status == 0)
    let one = merge("run", recipe, dir.path + "/o1", "--threads", "1", "--no-cache")
    #expect(one.status == 0, "\(one.err)")
    let first = try text(dir.path + "/r.lock")
    #expect(first.contains("\"file\": \"model.safetensors\""))
    let two = merge("run", recipe, dir.path + "/o2", "--threads", "2", "--no-cache", "--locked")
    #expect(two.status == 0, "\(two.err)")
    #expect(try text(dir.path + "/r.lock") == first)
  }

  @Test("--locked refuses a changed input before computing anything, naming the file")
  func lockedRefuses() throws {
    let (dir, recipe) = try workspace()
    #expect(merge("lock", recipe).status == 0)
    let lockText = try text(dir.path + "/r.lock")
    try flip(dir.path + "/ft1/model.safetensors")
    let result = merge("run", recipe, dir.path + "/out", "--locked", "--no-cache")
    #expect(result.status == 1)
    #expect(result.err.contains("--locked: the inputs are not the ones"), "\(result.err)")
    #expect(result.err.contains("ft1/model.safetensors differs: SHA-256 "))
    #expect(result.err.contains("nothing was computed"))
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    #expect(try text(dir.path + "/r.lock") == lockText)
    // Without --locked the merge runs and the lock records what it read.
    #expect(merge("run", recipe, dir.path + "/out", "--no-cache").status == 0)
    #expect(try text(dir.path + "/r.lock") != lockText)
    // A recipe without a lock cannot run --locked.
    let other = dir.write("other.yml", try text(recipe))
    let none = merge("run", other, dir.path + "/out3", "--locked")
    #expect(none.status == 1)
    #expect(none.err.contains("merge lock"), "\(none.err)")
  }

  @Test("merge verify passes on the output and fails once one byte of it changes")
  func verify() throws {
    let (dir, recipe) = try workspace()
    #expect(merge("lock", recipe).status == 0)
    #expect(merge("run", recipe, dir.path + "/out", "--no-cache").status == 0)
    let ok = merge("verify", recipe, dir.path + "/out")
    #expect(ok.status == 0, "\(ok.err)")
    // README.md, config.json, mergekit_config.yml, the weights and two tokenizer files.
    #expect(ok.out == dir.path + "/out: 6 files, as \(dir.path)/r.lock records\n")
    let recomputed = merge("verify", recipe, dir.path + "/out", "--recompute", "--no-cache")
    #expect(recomputed.status == 0, "\(recomputed.err)")
    try flip(dir.path + "/out/model.safetensors")
    let bad = merge("verify", recipe, dir.path + "/out")
    #expect(bad.status == 1)
    #expect(bad.err.contains("out: model.safetensors differs: SHA-256 "), "\(bad.err)")
    let badAgain = merge("verify", recipe, dir.path + "/out", "--recompute", "--no-cache")
    #expect(badAgain.status == 1)
    #expect(badAgain.err.contains("model.safetensors differs"), "\(badAgain.err)")
    // Nothing is left of the recomputed merge.
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == [
        "base", "ft0", "ft1", "out", "r.lock", "r.yml",
      ])
  }

  @Test("every shard carries the provenance, and merge inspect shows it")
  func provenance() throws {
    let (dir, recipe) = try workspace()
    #expect(merge("lock", recipe, "--seed", "3").status == 0)
    let run = merge(
      "run", recipe, dir.path + "/out", "--seed", "3", "--shard-size", "400K", "--no-cache")
    #expect(run.status == 0, "\(run.err)")
    let lock = try MergeLock(path: dir.path + "/r.lock")
    let shards = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out").filter {
      $0.hasSuffix(".safetensors")
    }
    #expect(shards.count > 1)
    for shard in shards {
      let header = try SafetensorsHeader(path: dir.path + "/out/" + shard)
      #expect(
        header.metadata.map(\.0) == [
          "format", "merge_tool", "merge_recipe_sha256", "merge_seed", "merge_lock_sha256",
        ])
      #expect(
        header.metadata.map(\.1) == [
          "pt", "merge " + MergeCommand.version, lock.recipe, "3", lock.inputDigest,
        ])
    }
    let inspect = merge("inspect", dir.path + "/out")
    #expect(inspect.out.contains("merge_seed: 3\n"))
    #expect(inspect.out.contains("merge_lock_sha256: \(lock.inputDigest)\n"))
  }
}
