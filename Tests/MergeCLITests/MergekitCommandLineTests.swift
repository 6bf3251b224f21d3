import Foundation
import Testing
import _TestSupport

@testable import MergeCLI

/// mergekit-yaml's command line, as `merge run` and `merge` named `mergekit-yaml` take it.
@Suite struct MergekitCommandLineTests {
  /// One option of mergekit 0.1.5's `mergekit-yaml --help` (its MergeOptions, written out
  /// here from mergekit's source, not from merge's table) and what merge must do with it.
  struct Flag: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    /// nil: accepted silently; "note: …": accepted with that note; "error: …": refused.
    var expected: String?
    var testDescription: String { arguments.joined(separator: " ") }
  }

  static let cpu = "has no effect: merge computes on the CPU, on every core"
  static let flags: [Flag] = [
    Flag(arguments: ["--allow-crimes"], expected: nil),
    Flag(arguments: ["--no-allow-crimes"], expected: nil),
    Flag(
      arguments: ["--unsafe-truncate-embeddings"],
      expected: "Error: mergekit's '--unsafe-truncate-embeddings' is not supported"),
    Flag(arguments: ["--no-unsafe-truncate-embeddings"], expected: nil),
    Flag(arguments: ["--transformers-cache", Repository.parity + "/hf-cache/hub"], expected: nil),
    Flag(
      arguments: ["--lora-merge-cache", "/tmp/lora-cache"],
      expected: "note: mergekit's --lora-merge-cache has no effect: merge needs no folder"),
    Flag(arguments: ["--lora-merge-dtype", "bfloat16"], expected: nil),
    Flag(arguments: ["--cuda"], expected: "note: mergekit's --cuda " + cpu),
    Flag(arguments: ["--no-cuda"], expected: nil),
    Flag(arguments: ["--device", "cuda:0"], expected: "note: mergekit's --device " + cpu),
    Flag(arguments: ["--low-cpu-memory"], expected: "note: mergekit's --low-cpu-memory " + cpu),
    Flag(arguments: ["--no-low-cpu-memory"], expected: nil),
    Flag(arguments: ["--out-shard-size", "100K"], expected: nil),
    Flag(arguments: ["--copy-tokenizer"], expected: nil),
    Flag(arguments: ["--no-copy-tokenizer"], expected: nil),
    Flag(
      arguments: ["--clone-tensors"], expected: "note: mergekit's --clone-tensors has no effect"),
    Flag(arguments: ["--no-clone-tensors"], expected: nil),
    Flag(
      arguments: ["--trust-remote-code"],
      expected: "note: mergekit's --trust-remote-code has no effect: merge never runs code"),
    Flag(arguments: ["--no-trust-remote-code"], expected: nil),
    Flag(arguments: ["--random-seed", "7"], expected: nil),
    Flag(
      arguments: ["--lazy-unpickle"], expected: "note: mergekit's --lazy-unpickle has no effect"),
    Flag(arguments: ["--no-lazy-unpickle"], expected: nil),
    Flag(arguments: ["--write-model-card"], expected: nil),
    Flag(arguments: ["--no-write-model-card"], expected: nil),
    Flag(arguments: ["--safe-serialization"], expected: nil),
    Flag(
      arguments: ["--no-safe-serialization"],
      expected:
        "Error: mergekit's '--no-safe-serialization' is not supported: merge writes safetensors only"
    ),
    Flag(arguments: ["-v"], expected: "note: mergekit's -v has no effect"),
    Flag(arguments: ["-vv"], expected: "note: mergekit's -v has no effect"),
    Flag(arguments: ["--quiet"], expected: nil),
    Flag(arguments: ["--no-quiet"], expected: nil),
    Flag(arguments: ["--read-to-gpu"], expected: "note: mergekit's --read-to-gpu " + cpu),
    Flag(arguments: ["--no-read-to-gpu"], expected: nil),
    Flag(arguments: ["--multi-gpu"], expected: "note: mergekit's --multi-gpu " + cpu),
    Flag(arguments: ["--no-multi-gpu"], expected: nil),
    Flag(arguments: ["--num-threads", "2"], expected: nil),
    Flag(arguments: ["-j", "2"], expected: nil),
    Flag(arguments: ["--gpu-rich"], expected: "note: mergekit's --gpu-rich " + cpu),
    Flag(arguments: ["--async-write"], expected: "note: mergekit's --async-write has no effect"),
    Flag(arguments: ["--no-async-write"], expected: nil),
    Flag(
      arguments: ["--write-threads", "2"],
      expected: "note: mergekit's --write-threads has no effect"
    ),
  ]

  static let recipe =
    "merge_method: linear\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1}\n"

  @Test(
    "each of mergekit-yaml's options is accepted, accepted with a note, or refused",
    arguments: flags)
  func flag(_ flag: Flag) throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(Self.recipe)
    let out = workspace.path("out")
    let arguments = ["run", recipe, out, "--no-cache"] + flag.arguments
    let capture = CapturingConsole()
    let status = MergeCommand.run(arguments, console: capture.console)
    // Without a terminal a run logs its progress ('[39/39] …'); the notes are the rest.
    let err = capture.standardError.split(separator: "\n", omittingEmptySubsequences: false)
      .filter { !$0.hasPrefix("[") }.joined(separator: "\n")
    switch flag.expected {
    case let refusal? where refusal.hasPrefix("Error:"):
      #expect(status == 64, "\(err)")
      #expect(err.hasPrefix(refusal), "\(err)")
      #expect(!FileManager.default.fileExists(atPath: out))
    case let note?:
      #expect(status == 0, "\(err)")
      #expect(err.hasPrefix(note), "\(err)")
    case nil:
      #expect(status == 0, "\(err)")
      #expect(err == "", "\(err)")
    }
  }

  @Test("the options that change the output change it as in mergekit")
  func effects() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(Self.recipe)
    let bare = workspace.path("bare")
    #expect(
      merge(
        "run", recipe, bare, "--no-cache", "--no-copy-tokenizer", "--no-write-model-card",
        "--out-shard-size", "300K", "-j", "1"
      ).status == 0)
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: bare).sorted() == [
        "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors", "model.safetensors.index.json",
      ])
    let seeded = workspace.path("seeded")
    #expect(merge("run", recipe, seeded, "--no-cache", "--random-seed", "7").status == 0)
    let card = try String(contentsOfFile: seeded + "/README.md", encoding: .utf8)
    #expect(card.contains("- Seed: 7\n"))
  }

  @Test("merge named mergekit-yaml is merge run, and writes the same bytes")
  func dropIn() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(Self.recipe)
    let link = workspace.path("mergekit-yaml")
    try FileManager.default.createSymbolicLink(
      atPath: link, withDestinationPath: Repository.mergeExecutable)
    let mergekit = try runProcess(
      link,
      [
        recipe, workspace.path("a"), "--out-shard-size", "5B", "--copy-tokenizer", "--cuda",
        "--lazy-unpickle", "--random-seed", "42", "--no-cache",
      ])
    #expect(mergekit.status == 0, "\(mergekit.stderr)")
    #expect(mergekit.stderr.contains("note: mergekit's --cuda has no effect"))
    let ours = try runProcess(
      Repository.mergeExecutable,
      ["run", recipe, workspace.path("b"), "--seed", "42", "--no-cache"])
    #expect(ours.status == 0, "\(ours.stderr)")
    for file in ["model.safetensors", "config.json", "README.md", "tokenizer.json"] {
      #expect(
        FileManager.default.contents(atPath: workspace.path("a/" + file))
          == FileManager.default.contents(atPath: workspace.path("b/" + file)), "\(file)")
    }
    let unknown = try runProcess(link, [recipe, workspace.path("c"), "--alow-crimes"])
    #expect(unknown.status == 64)
    #expect(unknown.stderr.contains("Did you mean '--allow-crimes'?"), "\(unknown.stderr)")
  }
}
