import Foundation
import Testing
import _TestSupport

@testable import MergeModel

/// What an output folder promises: one writer, nothing of the user's replaced or deleted, no
/// half-written destination (README, "Guarantees").
@Suite struct OutputFolderTests {
  @Test("a second writer of the same destination fails at once, naming the first")
  func lock() throws {
    let dir = TemporaryDirectory()
    let first = try OutputFolder(destination: dir.path + "/out")
    #expect(
      throws: ModelError.outputRefused(
        path: dir.path + "/out", reason: "another merge (pid \(getpid())) is writing it")
    ) {
      _ = try OutputFolder(destination: dir.path + "/out")
    }
    try first.write("x", bytes: [1])
    try first.commit()
    // Released with the commit: the next writer (with --force) gets it.
    dir.write("out/mergekit_config.yml", "a merge")
    let second = try OutputFolder(destination: dir.path + "/out", existing: .replaceMergeOutput)
    second.discard()
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
  }

  @Test("a folder that appears at the destination during the run is left alone")
  func appearedDuringRun() throws {
    let dir = TemporaryDirectory()
    let folder = try OutputFolder(destination: dir.path + "/out")
    try folder.write("model.safetensors", bytes: [1, 2, 3])
    dir.write("out/mine.txt", "the user's")
    #expect(
      throws: ModelError.outputRefused(
        path: dir.path + "/out", reason: "it appeared while the merge ran; it is left as it is")
    ) {
      try folder.commit()
    }
    folder.discard()
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out") == ["mine.txt"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
  }

  @Test("a previous output that changes during the run is left alone")
  func changedDuringRun() throws {
    let dir = TemporaryDirectory()
    dir.write("out/mergekit_config.yml", "old")
    let folder = try OutputFolder(destination: dir.path + "/out", existing: .replaceMergeOutput)
    try FileManager.default.removeItem(atPath: dir.path + "/out/mergekit_config.yml")
    dir.write("out/thesis.tex", "the user's")
    #expect(throws: ModelError.self) { try folder.commit() }
    folder.discard()
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out") == ["thesis.tex"])
  }

  @Test("what the destination may be: nothing, an empty folder, or with --force a merge output")
  func destinations() throws {
    let dir = TemporaryDirectory()
    dir.write("file", "x")
    dir.write("other/notes.txt", "x")
    dir.write("merged/mergekit_config.yml", "x")
    try FileManager.default.createDirectory(
      atPath: dir.path + "/empty", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(
      atPath: dir.path + "/link", withDestinationPath: dir.path + "/empty")
    for refused in [
      "", ".", "..", "/", dir.path + "/file", dir.path + "/other", dir.path + "/link",
    ] {
      #expect(throws: ModelError.self, "\(refused)") {
        try OutputFolder(destination: refused, existing: .replaceMergeOutput)
      }
    }
    #expect(throws: ModelError.self) { try OutputFolder(destination: dir.path + "/merged") }
    let empty = try OutputFolder(destination: dir.path + "/empty")
    try empty.write("a", bytes: [1])
    try empty.commit()
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/empty") == ["a"])
  }

  @Test("hidden folders of dead processes beside the destination are removed, others kept")
  func staleFolders() throws {
    let dir = TemporaryDirectory()
    // pid 2^22 + 1 is above Linux's pid_max: no such process.
    dir.write(".other.partial-4194305-3/model.safetensors", "x")
    dir.write(".out.partial-4194305-1/model.safetensors", "x")
    dir.write(".alive.partial-\(getpid())-9/model.safetensors", "x")
    dir.write(".notes.partial-draft/keep.txt", "x")
    let folder = try OutputFolder(destination: dir.path + "/out")
    defer { folder.discard() }
    let names = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
    #expect(!names.contains(".other.partial-4194305-3"))
    #expect(!names.contains(".out.partial-4194305-1"))
    #expect(names.contains(".alive.partial-\(getpid())-9"))
    #expect(names.contains(".notes.partial-draft"))
  }
}
