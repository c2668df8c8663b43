// AtomicFile, read_file and MappedFile: content, atomic replacement, clean-up, error messages.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pquant/io/atomic_file.hpp"
#include "pquant/io/mapped_file.hpp"

namespace fs = std::filesystem;
using pquant::IoError;
using pquant::ValueError;
using namespace pquant::io;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "pquant_io_XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path); }
  std::size_t entries() const {
    return static_cast<std::size_t>(
        std::distance(fs::directory_iterator(path), fs::directory_iterator()));
  }
};

std::string read_text(const std::string& p) {
  auto buf = read_file(p);
  return {reinterpret_cast<const char*>(buf.data()), buf.size()};
}

}  // namespace

TEST(AtomicFile, WritesAndReplaces) {
  TempDir dir;
  const std::string p = (dir.path / "a.bin").string();
  write_file_atomic(p, std::vector<std::uint8_t>{'o', 'l', 'd'});
  EXPECT_EQ(read_text(p), "old");
  {
    AtomicFile f(p);
    f.write(std::string_view("new "));
    f.write(std::string_view("content"));
    EXPECT_EQ(read_text(p), "old");  // not visible before commit
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_EQ(fs::path(f.temp_path()).parent_path(), dir.path);  // same directory: atomic rename
    f.commit();
    EXPECT_EQ(f.bytes_written(), 11u);
  }
  EXPECT_EQ(read_text(p), "new content");
  EXPECT_EQ(dir.entries(), 1u);  // no temp file left behind
  EXPECT_EQ(fs::status(p).permissions() & fs::perms::owner_read, fs::perms::owner_read);
}

TEST(AtomicFile, FailureLeavesOldContentAndNoTempFile) {
  TempDir dir;
  const std::string p = (dir.path / "model.safetensors").string();
  write_file_atomic(p, std::vector<std::uint8_t>{'v', '1'});
  try {
    AtomicFile f(p);
    f.write(std::string_view("partial"));
    throw std::runtime_error("writer failed midway");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_text(p), "v1");
  EXPECT_EQ(dir.entries(), 1u);
  AtomicFile g(p);
  g.abandon();
  EXPECT_THROW(g.write(std::string_view("x")), IoError);
  EXPECT_THROW(g.commit(), IoError);
  EXPECT_EQ(dir.entries(), 1u);
}

TEST(AtomicFile, ErrorsNameThePathAndReason) {
  TempDir dir;
  const std::string p = (dir.path / "no_such_dir" / "f.bin").string();
  try {
    AtomicFile f(p);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  }
  EXPECT_THROW(AtomicFile(""), ValueError);
  try {
    (void)read_file((dir.path / "missing").string());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
  EXPECT_THROW(MappedFile((dir.path / "missing").string()), IoError);
  EXPECT_THROW((void)read_file(dir.path.string()), IoError);  // a directory is not a regular file
}

TEST(AtomicFile, RenameOntoDirectoryFailsCleanly) {
  TempDir dir;
  const fs::path target = dir.path / "occupied";
  fs::create_directory(target);
  fs::create_directory(target / "child");  // rename(2) of a file onto a non-empty dir fails
  AtomicFile f(target.string());
  f.write(std::string_view("x"));
  EXPECT_THROW(f.commit(), IoError);
  EXPECT_EQ(dir.entries(), 1u);  // temp file removed
}

TEST(MappedFile, MatchesReadFile) {
  TempDir dir;
  const std::string p = (dir.path / "m.bin").string();
  std::vector<std::uint8_t> bytes(10000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 31 + 7);
  write_file_atomic(p, bytes);
  MappedFile m(p);
  ASSERT_EQ(m.size(), bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), m.data()));
  MappedFile moved = std::move(m);
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(moved.bytes()[9999], bytes[9999]);
  write_file_atomic(p, {});
  MappedFile empty(p);
  EXPECT_EQ(empty.size(), 0u);
}
