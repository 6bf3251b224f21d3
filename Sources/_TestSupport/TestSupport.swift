import Foundation
import MergeRecipe

/// Paths inside the repository, found relative to this file.
public enum Repository {
  /// The repository's root folder.
  public static let root: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
  }()

  /// `Tests/Parity`: mergekit's recipes, tiny models and outputs.
  public static var parity: String { root + "/Tests/Parity" }
  /// `Examples`.
  public static var examples: String { root + "/Examples" }
  /// The tiny Llama models.
  public static var tinyLlama: String { root + "/Examples/models/tiny-llama" }

  /// The built `merge` executable (debug build), next to the test bundle.
  public static var mergeExecutable: String {
    let bundle = Bundle.main.bundleURL.deletingLastPathComponent()
    let candidate = bundle.appendingPathComponent("merge").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    return root + "/.build/debug/merge"
  }
}

/// A fresh temporary folder, removed when the value is deinitialised.
public final class TemporaryDirectory: Sendable {
  /// The folder's path.
  public let path: String

  /// Creates an empty temporary folder.
  public init() {
    let base = FileManager.default.temporaryDirectory.path
    let name = "merge-test-" + UUID().uuidString
    path = base + "/" + name
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  deinit {
    try? FileManager.default.removeItem(atPath: path)
  }

  /// Writes `text` to `name` inside the folder and returns its path.
  @discardableResult
  public func write(_ name: String, _ text: String) -> String {
    let p = path + "/" + name
    try? FileManager.default.createDirectory(
      atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
    return p
  }

  /// Writes bytes to `name` inside the folder and returns its path.
  @discardableResult
  public func write(_ name: String, bytes: [UInt8]) -> String {
    let p = path + "/" + name
    try? FileManager.default.createDirectory(
      atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: p, contents: Data(bytes))
    return p
  }

  /// Makes `name` a symbolic link to `target`.
  public func link(_ name: String, to target: String) {
    try? FileManager.default.createSymbolicLink(
      atPath: path + "/" + name, withDestinationPath: target)
  }
}

/// Recipe text with numbered markers where diagnostics are expected.
///
/// Modelled on swift-format's `MarkedText`: the markers (`1️⃣`, `2️⃣`, …) are removed and
/// their locations kept.
public struct MarkedText: Sendable {
  /// The text without markers.
  public let text: String
  /// Where each marker stood.
  public let markers: [String: SourceLocation]

  /// Strips the markers from `marked`.
  public init(_ marked: String) {
    let symbols: Set<Character> = ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣"]
    var out = ""
    var markers: [String: SourceLocation] = [:]
    var line = 1
    var column = 1
    for ch in marked {
      if symbols.contains(ch) {
        markers[String(ch)] = SourceLocation(line: line, column: column)
        continue
      }
      out.append(ch)
      if ch == "\n" {
        line += 1
        column = 1
      } else {
        column += ch.unicodeScalars.count
      }
    }
    self.text = out
    self.markers = markers
  }

  /// The location of marker `m`.
  public subscript(_ m: String) -> SourceLocation? { markers[m] }
}

/// Runs an executable and returns its status and output.
public func runProcess(
  _ executable: String, _ arguments: [String], currentDirectory: String? = nil,
  environment: [String: String] = [:]
) throws -> (status: Int32, stdout: String, stderr: String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
  if !environment.isEmpty {
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  }
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  let errData = err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (
    process.terminationStatus, String(decoding: outData, as: UTF8.self),
    String(decoding: errData, as: UTF8.self)
  )
}

/// SplitMix64: a small, seedable generator, so that a failing random input can be reproduced.
public struct SplitMix64: RandomNumberGenerator {
  /// The generator's state.
  public var state: UInt64

  /// A generator starting from `state`.
  public init(state: UInt64) {
    self.state = state
  }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// A temporary folder with `models/` linked to a folder of models (the tiny Llama models by
/// default), where test recipes live and name them as `models/base`, `models/ft0`, ….
public final class ModelWorkspace: Sendable {
  /// The folder.
  public let directory = TemporaryDirectory()

  /// A workspace whose `models/` is `models`.
  public init(models: String = Repository.tinyLlama) {
    directory.link("models", to: models)
  }

  /// Writes recipe `text` as `name` and returns its path.
  @discardableResult
  public func recipe(_ text: String, name: String = "recipe.yml") -> String {
    directory.write(name, text)
  }

  /// The path of `name` inside the workspace.
  public func path(_ name: String) -> String { directory.path + "/" + name }
}

/// The bytes of the file at `path` as two merges of the same model compare.
///
/// For a safetensors file, its tensors' header entries (sorted) and data, without the
/// provenance a run records in `__metadata__` (`merge_*`, which names the recipe: a Hub id and a
/// path to the same model are different recipes); any other file as it is. Nil when the file
/// cannot be read.
public func comparableContents(atPath path: String) -> Data? {
  guard let bytes = FileManager.default.contents(atPath: path) else { return nil }
  guard path.hasSuffix(".safetensors"), bytes.count >= 8 else { return bytes }
  let length = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
  guard length <= bytes.count - 8,
    var header = try? JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + length)))
      as? [String: Any]
  else { return bytes }
  if var metadata = header["__metadata__"] as? [String: String] {
    for key in metadata.keys where key.hasPrefix("merge_") { metadata.removeValue(forKey: key) }
    header["__metadata__"] = metadata
  }
  guard let canonical = try? JSONSerialization.data(withJSONObject: header, options: .sortedKeys)
  else { return bytes }
  return canonical + bytes.subdata(in: (8 + length)..<bytes.count)
}
