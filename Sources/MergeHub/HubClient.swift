import CHTTP
import Foundation
import MergeModel

/// The Hugging Face Hub's HTTP API, as `huggingface_hub` uses it.
///
/// A repository's revision is resolved to a commit with its file list, and files are fetched
/// whole, from an offset, or as a byte range (`/{repo}/resolve/{commit}/{file}`). Calls block
/// the calling thread. The requests are libcurl's, opened when the first one is made
/// (`merge_http.h`): most runs never touch the network, and loading libcurl with the libraries
/// behind it took ~9 ms of every start.
public struct HubClient: Sendable {
  /// The endpoint, token and offline switch.
  public let settings: HubSettings

  /// A client of the Hub `settings` name.
  public init(settings: HubSettings) {
    self.settings = settings
  }

  /// A file of a repository at a commit.
  public struct FileEntry: Sendable, Hashable {
    /// Its size in bytes.
    public var size: Int
    /// The blob name the hub cache stores it under: the SHA-256 of an LFS file, else the git
    /// blob id (what `huggingface_hub` names blobs by, its ETag).
    public var blobID: String
    /// The SHA-256 the Hub states for an LFS file, which a download is checked against.
    public var sha256: String?
  }

  /// A revision resolved: its commit and files.
  public struct RepositoryInfo: Sendable, Hashable {
    /// The commit id.
    public var commit: String
    /// The files, by path in the repository.
    public var files: [String: FileEntry]
  }

  /// The commit and files of `repository` at `revision` (`GET /api/models/{repo}/revision/{rev}?blobs=true`).
  public func info(_ repository: HubRepositoryID, revision: String) throws(ModelError)
    -> RepositoryInfo
  {
    let url =
      "\(settings.endpoint)/api/models/\(repository.value)/revision/\(Self.escape(revision, keepSlash: false))?blobs=true"
    let body = try get(url, repository: repository, range: nil)
    guard let json = try? JSONValue.parse(body), let commit = json["sha"]?.stringValue,
      HubCache.isCommitID(commit), let siblings = json["siblings"]?.arrayValue
    else {
      throw .hub(
        repository: repository.value,
        reason: "the Hub's answer at \(url) is not a model's file list")
    }
    var files: [String: FileEntry] = [:]
    for entry in siblings {
      guard let name = entry["rfilename"]?.stringValue, Self.isSafeRelativePath(name) else {
        continue
      }
      let lfs = entry["lfs"]
      let sha256 = lfs?["sha256"]?.stringValue ?? lfs?["oid"]?.stringValue
      let size = lfs?["size"]?.intValue ?? entry["size"]?.intValue ?? 0
      guard let blob = sha256 ?? entry["blobId"]?.stringValue, Self.isBlobID(blob) else { continue }
      files[name] = FileEntry(size: size, blobID: blob, sha256: sha256)
    }
    return RepositoryInfo(commit: commit, files: files)
  }

  /// File `name` of `repository` at `commit`, or bytes `range` of it.
  public func bytes(
    _ repository: HubRepositoryID, commit: String, file name: String, range: Range<Int>? = nil
  ) throws(ModelError) -> [UInt8] {
    try get(fileURL(repository, commit: commit, file: name), repository: repository, range: range)
  }

  /// Streams file `name` from byte `offset` to its end into `sink`; returns the bytes streamed.
  func stream(
    _ repository: HubRepositoryID, commit: String, file name: String, from offset: Int,
    into sink: @escaping @Sendable (Data) -> Bool
  ) throws(ModelError) -> Int {
    let url = fileURL(repository, commit: commit, file: name)
    let range = offset > 0 ? offset..<Int.max : nil
    let transfer = Transfer(sink: sink)
    try perform(url, range: range, transfer: transfer, repository: repository)
    return transfer.delivered
  }

  func fileURL(_ repository: HubRepositoryID, commit: String, file: String) -> String {
    "\(settings.endpoint)/\(repository.value)/resolve/\(commit)/\(Self.escape(file, keepSlash: true))"
  }

  private func get(_ url: String, repository: HubRepositoryID, range: Range<Int>?)
    throws(ModelError)
    -> [UInt8]
  {
    let collected = Collected()
    let transfer = Transfer { data in collected.append(data) }
    try perform(url, range: range, transfer: transfer, repository: repository)
    return collected.bytes
  }

  /// Runs one request, following redirects, and turns HTTP failures into the Hub's errors.
  private func perform(
    _ url: String, range: Range<Int>?, transfer: Transfer, repository: HubRepositoryID
  ) throws(ModelError) {
    guard !settings.offline else {
      throw .hub(
        repository: repository.value, reason: "HF_HUB_OFFLINE is set, and merge would need \(url)")
    }
    guard URL(string: url) != nil else {
      throw .hub(repository: repository.value, reason: "'\(url)' is not a URL")
    }
    var headers = ["Accept-Encoding: identity", "User-Agent: merge"]
    if let token = settings.token {
      headers.append("Authorization: Bearer \(token)")
    }
    if let range {
      let end = range.upperBound == Int.max ? "" : String(range.upperBound - 1)
      headers.append("Range: bytes=\(range.lowerBound)-\(end)")
    }
    let answer = transfer.get(url, headers: headers, idleSeconds: 60)
    if answer.failure == merge_http_unavailable {
      throw .missingLibrary(
        library: "libcurl (for the Hub)",
        reason: "\(Transfer.message(answer)) (Scripts/setup installs Debian's libcurl4)")
    }
    if let failure = Transfer.describe(answer) {
      throw .hub(repository: repository.value, reason: "cannot read \(url): \(failure)")
    }
    let status = answer.status
    if (200..<300).contains(status) {
      if range != nil, status != 206 {
        throw .hub(
          repository: repository.value,
          reason: "\(url) ignored a byte-range request (HTTP \(status))")
      }
      return
    }
    throw .hub(
      repository: repository.value,
      reason: Self.explain(
        status, errorCode: Transfer.errorCode(answer), url: url, repository: repository,
        settings: settings))
  }

  /// What an HTTP failure means, as `huggingface_hub` reads the Hub's `X-Error-Code`.
  static func explain(
    _ status: Int, errorCode code: String, url: String, repository: HubRepositoryID,
    settings: HubSettings
  ) -> String {
    let page = "\(settings.endpoint)/\(repository.value)"
    let login =
      settings.token == nil
      ? "set HF_TOKEN (or log in with 'hf auth login') if you have access"
      : "the token in use (HF_TOKEN or the token file) has no access to it"
    switch (status, code) {
    case (_, "GatedRepo"):
      return
        "the repository is gated: accept its conditions at \(page), then use a token of that account (\(settings.token == nil ? "none is set" : "the one in use is not allowed"))"
    case (_, "RevisionNotFound"):
      return "the repository has no such revision (HTTP \(status) for \(url))"
    case (_, "EntryNotFound"):
      return "the file is not in the repository (HTTP \(status) for \(url))"
    case (401, _), (403, _):
      return
        "the Hub refused access (HTTP \(status)): the repository is private or does not exist; \(login)"
    case (404, _):
      return
        "the repository does not exist at \(settings.endpoint) (HTTP 404), or is private: \(login)"
    case (416, _):
      return "the Hub refused the byte range asked of \(url) (HTTP 416)"
    default:
      return "HTTP \(status) for \(url)"
    }
  }

  /// `text` percent-encoded for a URL path (`/` kept between a file's folders).
  static func escape(_ text: String, keepSlash: Bool) -> String {
    var out = ""
    for byte in text.utf8 {
      let c = Character(Unicode.Scalar(byte))
      if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c) || (keepSlash && c == "/")) {
        out.append(c)
      } else {
        out +=
          "%" + String(byte >> 4, radix: 16, uppercase: true)
          + String(byte & 15, radix: 16, uppercase: true)
      }
    }
    return out
  }

  /// Whether a repository file name stays inside the snapshot folder.
  static func isSafeRelativePath(_ name: String) -> Bool {
    !name.isEmpty && !name.hasPrefix("/")
      && !name.split(separator: "/", omittingEmptySubsequences: false).contains {
        $0 == ".." || $0 == "." || $0.isEmpty
      }
  }

  /// Whether `id` is a blob name: 40 (git) or 64 (SHA-256) hexadecimal digits.
  static func isBlobID(_ id: String) -> Bool {
    (id.utf8.count == 40 || id.utf8.count == 64)
      && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
  }
}

/// Bytes gathered from a transfer.
private final class Collected: @unchecked Sendable {
  private let lock = NSLock()
  private var data = Data()
  /// The most a whole-file read gathers (config files, headers).
  static let limit = 128 << 20

  func append(_ more: Data) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    data.append(more)
    return data.count <= Self.limit
  }

  var bytes: [UInt8] {
    lock.lock()
    defer { lock.unlock() }
    return [UInt8](data)
  }
}

/// One request: hands the body of a successful answer to `sink` as it arrives.
final class Transfer: @unchecked Sendable {
  let sink: @Sendable (Data) -> Bool
  /// Bytes handed to `sink` (only this request's thread touches it).
  private(set) var delivered = 0

  init(sink: @escaping @Sendable (Data) -> Bool) {
    self.sink = sink
  }

  /// GETs `url` with `headers` ("Name: value"), on this thread; the answer's status, error
  /// code and failure.
  func get(_ url: String, headers: [String], idleSeconds: Int) -> merge_http_result {
    var answer = merge_http_result()
    let context = Unmanaged.passUnretained(self).toOpaque()
    withCStrings(headers) { pointers in
      merge_http_get(
        url, pointers, Int32(pointers.count), idleSeconds,
        { context, bytes, count in
          guard let context, let bytes else { return 1 }
          let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
          guard transfer.sink(Data(bytes: bytes, count: count)) else { return 0 }
          transfer.delivered += count
          return 1
        }, context, &answer)
    }
    return answer
  }

  /// A failure below HTTP in words that do not change from run to run (curl's own text for
  /// timeouts carries timings), or nil.
  static func describe(_ answer: merge_http_result) -> String? {
    switch answer.failure {
    case merge_http_ok: return nil
    case merge_http_refused: return "the server refused the connection"
    case merge_http_unresolved: return "the host name does not resolve"
    case merge_http_timed_out: return "the connection timed out"
    case merge_http_lost: return "the connection was lost"
    case merge_http_tls: return "the TLS connection failed (\(message(answer)))"
    case merge_http_stopped: return "the transfer was stopped"
    default: return message(answer)
    }
  }

  /// libcurl's words for the failure.
  static func message(_ answer: merge_http_result) -> String {
    withUnsafeBytes(of: answer.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
  }

  /// The final answer's `X-Error-Code` header, or "".
  static func errorCode(_ answer: merge_http_result) -> String {
    withUnsafeBytes(of: answer.error_code) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
  }
}

/// Calls `body` with `strings` as C strings, alive for the call.
private func withCStrings<R>(
  _ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R
) -> R {
  let copies = strings.map { strdup($0) }
  defer { copies.forEach { free($0) } }
  return body(copies.map { UnsafePointer($0) })
}
