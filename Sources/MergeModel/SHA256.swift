import CCrypto

/// SHA-256 through the system's libcrypto (OpenSSL's EVP interface), fed in pieces.
public final class SHA256 {
  private let context: OpaquePointer

  /// A digest of nothing yet.
  public init() {
    guard let context = EVP_MD_CTX_new() else { fatalError("libcrypto cannot allocate a digest") }
    self.context = context
    EVP_DigestInit_ex(context, EVP_sha256(), nil)
  }

  deinit { EVP_MD_CTX_free(context) }

  /// Adds `bytes` to the digest.
  public func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
    EVP_DigestUpdate(context, base, bytes.count)
  }

  /// Adds `bytes` to the digest.
  public func update(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { update($0) }
  }

  /// The digest as 64 lowercase hexadecimal digits (the digest cannot be fed after this).
  public func hexDigest() -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    EVP_DigestFinal_ex(context, &digest, &length)
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(64)
    for b in digest.prefix(Int(length)) {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// The SHA-256 of `bytes`, in hexadecimal.
  public static func hex(_ bytes: [UInt8]) -> String {
    let h = SHA256()
    h.update(bytes)
    return h.hexDigest()
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

extension SHA256 {
  /// The size and SHA-256 of the regular file at `path`, read in 8 MiB pieces.
  public static func file(_ path: String) throws(ModelError) -> (size: Int, sha256: String) {
    let (fd, size) = try FileSystem.openRegularFile(path)
    defer { close(fd) }
    #if canImport(Glibc)
      _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
    #endif
    let hash = SHA256()
    let chunk = 8 << 20
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
    defer { buffer.deallocate() }
    var offset = 0
    while offset < size {
      let n = pread(fd, buffer.baseAddress, min(chunk, size - offset), off_t(offset))
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw n == 0
          ? .io(path: path, call: "read (the file shrank while it was hashed)", errno: 0)
          : .io(path: path, call: "pread", errno: errno)
      }
      hash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
      offset += n
    }
    return (size, hash.hexDigest())
  }

  /// The size and SHA-256 of the file at `path`: the name a Hugging Face cache already gives
  /// an LFS blob (``cacheName(of:)``, not read again), else hashed.
  public static func content(of path: String) throws(ModelError) -> (size: Int, sha256: String) {
    if let named = cacheName(of: path) { return named }
    return try file(path)
  }

  /// The SHA-256 a Hugging Face cache already names the file at `path` by: a snapshot's link to
  /// `blobs/<64 hex digits>` (a Git LFS file, named by its SHA-256), with the blob's size; nil
  /// for anything else (small files are named by their Git SHA-1).
  public static func cacheName(of path: String) -> (size: Int, sha256: String)? {
    guard let target = FileSystem.linkTarget(path) else { return nil }
    let name = target.split(separator: "/").last.map(String.init) ?? ""
    let parent = FileSystem.directoryName(target).split(separator: "/").last
    guard parent == "blobs", name.utf8.count == 64,
      name.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
      let size = try? FileSystem.size(of: path)
    else { return nil }
    return (size, name)
  }
}
