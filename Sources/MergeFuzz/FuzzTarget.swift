import Foundation
import MergeCompiler
import MergeModel
import MergeRecipe

/// The fuzz targets: arbitrary bytes in, no crash, no hang, and checked properties.
///
/// Each checks what must hold of whatever it accepts. `merge-fuzz` runs one under libFuzzer
/// (`Scripts/fuzz/run`); the tests replay the corpus through the same functions.
public enum FuzzTarget: String, CaseIterable, Sendable {
  /// The recipe front end: YAML → check → resolve → lower → passes, over a folder of tiny
  /// models named `base`, `ft0`, `ft1`, `ft2`; then every diagnostic is rendered.
  case recipe
  /// The safetensors header reader, the fast path checked against the general one.
  case header
  /// The restricted reader of `pytorch_model.bin` (zip archive and pickle): whatever it
  /// accepts lies inside the file and reads without a crash.
  case checkpoint

  /// Runs the target on `bytes`; a violated property stops the process (a finding).
  public func run(_ bytes: [UInt8]) {
    let violations = check(bytes)
    if !violations.isEmpty { fatalError(violations.joined(separator: "\n")) }
  }

  /// Runs the target on `bytes` and returns the properties it violated (a crash or a hang
  /// is a finding too, caught by libFuzzer).
  public func check(_ bytes: [UInt8]) -> [String] {
    var violations = Violations()
    switch self {
    case .recipe: Self.recipe(bytes, &violations)
    case .header: Self.header(bytes, &violations)
    case .checkpoint: Self.checkpoint(bytes, &violations)
    }
    return violations.found
  }

  /// The properties that failed on one input.
  struct Violations {
    var found: [String] = []

    mutating func require(_ condition: Bool, _ what: @autoclosure () -> String) {
      if !condition { found.append(what()) }
    }
  }

  /// The folder the recipe target's recipes are read from, holding its tiny models; made once
  /// per process, on first use, and removed when the process exits (tests running side by side
  /// share it, so none may remove it earlier).
  static let workspace: String = {
    let path = NSTemporaryDirectory() + "merge-fuzz-\(getpid())"
    atexit { FuzzTarget.cleanUp() }
    do {
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
      try SyntheticLlama.write(to: path, layers: 4, hidden: 16, vocab: 32)
    } catch {
      fatalError("cannot write the fuzz models under \(path): \(error)")
    }
    return path
  }()

  /// Removes the models the recipe target wrote (nothing when it did not run); at exit.
  static func cleanUp() {
    let path = NSTemporaryDirectory() + "merge-fuzz-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
  }

  private static func recipe(_ bytes: [UInt8], _ v: inout Violations) {
    // As `merge check` reads a file: UTF-8 only (anything else is one diagnostic, tested).
    guard let text = String(validating: bytes, as: UTF8.self) else { return }
    let file = workspace + "/recipe.yml"
    var options = CompileOptions()
    options.phase = .graphs
    let compilation = Compiler.compile(text: text, file: file, options: options)
    let lines = DiagnosticRenderer.lines(of: text).count
    let renderer = DiagnosticRenderer(sources: [file: text])
    for d in compilation.diagnostics {
      let said = "\(d.range.map(\.description) ?? "-") \(d.message.text)"
      if let range = d.range {
        v.require(range.start <= range.end, "a range that ends before it starts: \(said)")
        v.require(
          range.start.line >= 1 && range.end.line <= lines + 1, "a line outside: \(said)")
        v.require(range.start.column >= 1, "a column before the first: \(said)")
      }
      _ = renderer.render(d)
    }
    if !compilation.hasErrors, let plan = compilation.plan {
      v.require(compilation.graphs.count == plan.tensors.count, "a tensor without a graph")
    }
  }

  private static func checkpoint(_ bytes: [UInt8], _ v: inout Violations) {
    // The reader works on a file (it maps tensors from it): one of its own per input, apart
    // from the recipe target's folder.
    let path = NSTemporaryDirectory() + "merge-fuzz-checkpoint-\(getpid())-\(UUID().uuidString).bin"
    defer { unlink(path) }
    do {
      try FileSystem.write(path, bytes: bytes)
    } catch {
      v.require(false, "cannot write the input: \(error)")
      return
    }
    guard let file = try? SafetensorsFile.open(path) else { return }
    for t in file.header.tensors {
      v.require(
        t.dataRange.lowerBound >= 0 && t.dataRange.upperBound <= bytes.count,
        "tensor '\(t.name)' lies outside the file")
      v.require(t.byteCount == t.count * t.dtype.byteSize, "a size that does not match its shape")
      if let view = try? file.tensor(t.name) {
        v.require(view.floats().count == t.count, "tensor '\(t.name)' reads a wrong count")
      }
    }
  }

  private static func header(_ bytes: [UInt8], _ v: inout Violations) {
    let fast = Result { () throws(ModelError) in try SafetensorsHeader(bytes: bytes, path: "f") }
    let general = Result { () throws(ModelError) in
      try SafetensorsHeader(bytes: bytes, path: "f", fastReader: false)
    }
    switch (fast, general) {
    case (.success(let a), .success(let b)):
      v.require(a == b, "the two readers read different headers")
      var end = 0
      // Ordered as the safetensors library orders them: by (begin, end), so that an empty
      // tensor may sit at the start of another.
      let ordered = a.tensors.sorted {
        ($0.dataRange.lowerBound, $0.dataRange.upperBound)
          < ($1.dataRange.lowerBound, $1.dataRange.upperBound)
      }
      for t in ordered {
        v.require(t.dataRange.lowerBound == end, "a hole or an overlap was accepted at \(t.name)")
        v.require(t.byteCount == t.count * t.dtype.byteSize, "a size that does not match")
        end = t.dataRange.upperBound
      }
      v.require(a.dataOffset + end == bytes.count, "trailing bytes were accepted")
      for (i, t) in a.tensors.enumerated() {
        v.require(a.positions[t.name] == i, "'\(t.name)' is not found by name")
      }
    case (.failure(let a), .failure(let b)):
      v.require(a == b, "the two readers give different errors: '\(a)' and '\(b)'")
    default:
      v.require(false, "one reader accepts what the other refuses: \(fast) vs \(general)")
    }
  }
}
