import Dispatch
import Foundation
import Synchronization

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The local stand-in for the Hugging Face Hub (`Tests/HubServer/hub_server.py`, Python's
/// standard library), serving folders as repositories on 127.0.0.1; stopped on deinit.
public final class HubServer: @unchecked Sendable {
  /// Whether `python3` is there to run it (tests that need it are skipped otherwise).
  public static let available: Bool = {
    let which = try? runProcess("/usr/bin/env", ["python3", "-c", "import http.server"])
    return which?.status == 0
  }()

  /// The server's process id.
  private let pid: Int32
  /// `http://127.0.0.1:PORT`.
  public let endpoint: String
  /// The token private and gated repositories accept.
  public static let token = "secret"

  /// Serves `repos` (id → folder, with `private`/`gated` flags), with `faults` (the server's
  /// `corrupt_once` and `stall_once` settings).
  ///
  /// The server is started through `sh … &`, not as a child the test process waits for:
  /// Foundation's `Process` on Linux stops reporting other children's exits while a child it
  /// launched keeps running.
  public init(
    repos: [String: (path: String, isPrivate: Bool, gated: Bool)],
    faults: [String: Any] = [:], in directory: TemporaryDirectory
  ) throws {
    var repoSpecs: [String: Any] = [:]
    for (id, r) in repos {
      repoSpecs[id] = ["path": r.path, "private": r.isPrivate, "gated": r.gated]
    }
    var config: [String: Any] = ["repos": repoSpecs, "token": Self.token]
    config.merge(faults) { _, b in b }
    (pid, endpoint) = try LocalServer.start(
      script: Repository.root + "/Tests/HubServer/hub_server.py", config: config, in: directory)
  }

  deinit {
    kill(pid, SIGKILL)
  }

  /// The environment that points `merge` at this server, with `cache` as the hub cache.
  public func environment(cache: String, token: String? = nil) -> [String: String] {
    ["HF_ENDPOINT": endpoint, "HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "", "HF_TOKEN": token ?? ""]
  }

  /// What the server has sent so far: the bytes of response bodies, and each request.
  public func stats() throws -> (
    bodyBytes: Int, requests: [(method: String, path: String, range: String?)]
  ) {
    let data = try fetch(endpoint + "/_stats")
    let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    let requests = (json["requests"] as? [[String: Any]] ?? []).map {
      (
        method: $0["method"] as? String ?? "", path: $0["path"] as? String ?? "",
        range: $0["range"] as? String
      )
    }
    return (json["body_bytes"] as? Int ?? 0, requests)
  }
}

/// Starts the test servers (Python's standard library, on 127.0.0.1).
enum LocalServer {
  /// Runs `script` with `config` written as JSON; returns its process id and address once it
  /// listens (the script prints "PORT PID").
  ///
  /// The server is started through `sh … &`, not as a child the test process waits for:
  /// Foundation's `Process` on Linux stops reporting other children's exits while a child it
  /// launched keeps running.
  static func start(script: String, config: [String: Any], in directory: TemporaryDirectory)
    throws -> (pid: Int32, endpoint: String)
  {
    let name = directory.path + "/server-\(UUID().uuidString)"
    try JSONSerialization.data(withJSONObject: config).write(
      to: URL(fileURLWithPath: name + ".json"))
    _ = try runProcess(
      "/bin/sh",
      ["-c", "python3 '\(script)' '\(name).json' > '\(name).port' 2>/dev/null < /dev/null &"])
    var fields: [Substring] = []
    for _ in 0..<200 {
      if let text = try? String(contentsOfFile: name + ".port", encoding: .utf8),
        text.hasSuffix("\n")
      {
        fields = text.split(whereSeparator: \.isWhitespace)
        break
      }
      usleep(50_000)
    }
    guard fields.count == 2, let port = Int(fields[0]), let pid = Int32(fields[1]) else {
      throw CocoaError(.fileReadCorruptFile)
    }
    return (pid, "http://127.0.0.1:\(port)")
  }
}

/// The local stand-in for GitHub's REST API (`Tests/HubServer/github_api.py`): a pull
/// request's comments, kept in memory; a read-only token is refused as a fork's is.
public final class GitHubServer: @unchecked Sendable {
  private let pid: Int32
  /// `http://127.0.0.1:PORT`.
  public let endpoint: String
  /// The token that may write.
  public static let token = "write-token"

  /// Starts the server.
  public init(in directory: TemporaryDirectory) throws {
    (pid, endpoint) = try LocalServer.start(
      script: Repository.root + "/Tests/HubServer/github_api.py", config: ["token": Self.token],
      in: directory)
  }

  deinit { kill(pid, SIGKILL) }

  /// The comments so far and every request, as the server recorded them.
  public func state() throws -> (comments: [(id: Int, body: String)], requests: [String]) {
    let json =
      try JSONSerialization.jsonObject(with: try fetch(endpoint + "/_state")) as? [String: Any]
    let comments = (json?["comments"] as? [[String: Any]] ?? []).map {
      (id: $0["id"] as? Int ?? 0, body: $0["body"] as? String ?? "")
    }
    return (comments, json?["requests"] as? [String] ?? [])
  }
}

/// The body of a GET of `address` (the test servers' own pages), by URLSession: the tests read
/// them apart from merge's own HTTP client, which `merge` opens only when it needs it.
public func fetch(_ address: String) throws -> Data {
  guard let url = URL(string: address) else { throw CocoaError(.fileReadInvalidFileName) }
  let answer = Mutex<Result<Data, any Error>>(.failure(CocoaError(.fileReadUnknown)))
  let done = DispatchSemaphore(value: 0)
  URLSession.shared.dataTask(with: url) { data, _, error in
    answer.withLock { $0 = error.map { .failure($0) } ?? .success(data ?? Data()) }
    done.signal()
  }.resume()
  done.wait()
  return try answer.withLock { try $0.get() }
}
