// Fixed-point ARM latent coder; the format is specified in arm.hpp and docs/arm_coder.md.
#include "arm.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "parallel.hpp"

namespace wz::arm {
namespace {

// Generated with Python's decimal module at 80 digits (exact values, rounded to nearest; no
// value is within 1e-30 of a tie): see docs/arm_coder.md.
constexpr uint64_t kRecip[256] = {
    1586259972792u, 1581970814792u, 1577693254434u, 1573427260360u,
    1569172801294u, 1564929846047u, 1560698363514u, 1556478322671u,
    1552269692582u, 1548072442393u, 1543886541334u, 1539711958715u,
    1535548663935u, 1531396626469u, 1527255815880u, 1523126201811u,
    1519007753987u, 1514900442214u, 1510804236382u, 1506719106461u,
    1502645022502u, 1498581954638u, 1494529873081u, 1490488748126u,
    1486458550146u, 1482439249595u, 1478430817007u, 1474433222997u,
    1470446438256u, 1466470433558u, 1462505179753u, 1458550647772u,
    1454606808624u, 1450673633396u, 1446751093253u, 1442839159439u,
    1438937803274u, 1435046996157u, 1431166709565u, 1427296915050u,
    1423437584242u, 1419588688849u, 1415750200652u, 1411922091513u,
    1408104333366u, 1404296898222u, 1400499758170u, 1396712885372u,
    1392936252065u, 1389169830563u, 1385413593253u, 1381667512599u,
    1377931561136u, 1374205711477u, 1370489936306u, 1366784208383u,
    1363088500540u, 1359402785684u, 1355727036794u, 1352061226923u,
    1348405329197u, 1344759316812u, 1341123163041u, 1337496841226u,
    1333880324781u, 1330273587195u, 1326676602024u, 1323089342899u,
    1319511783522u, 1315943897665u, 1312385659171u, 1308837041954u,
    1305298020000u, 1301768567362u, 1298248658166u, 1294738266607u,
    1291237366950u, 1287745933530u, 1284263940749u, 1280791363082u,
    1277328175070u, 1273874351324u, 1270429866524u, 1266994695418u,
    1263568812821u, 1260152193619u, 1256744812764u, 1253346645275u,
    1249957666241u, 1246577850816u, 1243207174222u, 1239845611749u,
    1236493138752u, 1233149730654u, 1229815362944u, 1226490011178u,
    1223173650976u, 1219866258026u, 1216567808081u, 1213278276960u,
    1209997640546u, 1206725874789u, 1203462955704u, 1200208859368u,
    1196963561927u, 1193727039587u, 1190499268623u, 1187280225371u,
    1184069886230u, 1180868227667u, 1177675226209u, 1174490858448u,
    1171315101038u, 1168147930699u, 1164989324210u, 1161839258417u,
    1158697710224u, 1155564656602u, 1152440074581u, 1149323941254u,
    1146216233778u, 1143116929368u, 1140026005303u, 1136943438923u,
    1133869207630u, 1130803288887u, 1127745660215u, 1124696299200u,
    1121655183486u, 1118622290779u, 1115597598843u, 1112581085504u,
    1109572728649u, 1106572506221u, 1103580396227u, 1100596376731u,
    1097620425855u, 1094652521784u, 1091692642760u, 1088740767082u,
    1085796873110u, 1082860939263u, 1079932944016u, 1077012865904u,
    1074100683519u, 1071196375512u, 1068299920591u, 1065411297522u,
    1062530485128u, 1059657462288u, 1056792207942u, 1053934701082u,
    1051084920761u, 1048242846086u, 1045408456221u, 1042581730388u,
    1039762647862u, 1036951187978u, 1034147330124u, 1031351053744u,
    1028562338338u, 1025781163463u, 1023007508728u, 1020241353800u,
    1017482678401u, 1014731462304u, 1011987685342u, 1009251327398u,
    1006522368413u, 1003800788381u, 1001086567347u, 998379685416u,
    995680122741u, 992987859532u, 990302876052u, 987625152617u,
    984954669596u, 982291407411u, 979635346537u, 976986467504u,
    974344750890u, 971710177330u, 969082727510u, 966462382166u,
    963849122089u, 961242928121u, 958643781155u, 956051662137u,
    953466552063u, 950888431982u, 948317282993u, 945753086246u,
    943195822944u, 940645474339u, 938102021733u, 935565446480u,
    933035729984u, 930512853700u, 927996799132u, 925487547834u,
    922985081411u, 920489381517u, 918000429855u, 915518208180u,
    913042698292u, 910573882044u, 908111741337u, 905656258120u,
    903207414393u, 900765192201u, 898329573641u, 895900540857u,
    893478076042u, 891062161435u, 888652779326u, 886249912052u,
    883853541995u, 881463651589u, 879080223312u, 876703239692u,
    874332683302u, 871968536764u, 869610782745u, 867259403961u,
    864914383174u, 862575703191u, 860243346867u, 857917297104u,
    855597536850u, 853284049097u, 850976816885u, 848675823299u,
    846381051472u, 844092484578u, 841810105841u, 839533898528u,
    837263845952u, 834999931471u, 832742138488u, 830490450450u,
    828244850850u, 826005323226u, 823771851159u, 821544418275u,
    819323008245u, 817107604783u, 814898191647u, 812694752641u,
    810497271610u, 808305732445u, 806120119079u, 803940415488u,
    801766605694u, 799598673760u, 797436603792u, 795280379940u,
};
constexpr uint64_t kExpHi[256] = {
    2147483648u, 2141676973u, 2135885998u, 2130110682u, 2124350982u, 2118606857u,
    2112878262u, 2107165158u, 2101467502u, 2095785251u, 2090118366u, 2084466803u,
    2078830522u, 2073209480u, 2067603638u, 2062012954u, 2056437387u, 2050876895u,
    2045331439u, 2039800978u, 2034285470u, 2028784876u, 2023299156u, 2017828268u,
    2012372174u, 2006930832u, 2001504204u, 1996092249u, 1990694927u, 1985312200u,
    1979944027u, 1974590370u, 1969251188u, 1963926443u, 1958616096u, 1953320108u,
    1948038440u, 1942771053u, 1937517909u, 1932278970u, 1927054196u, 1921843549u,
    1916646992u, 1911464486u, 1906295993u, 1901141476u, 1896000896u, 1890874216u,
    1885761398u, 1880662405u, 1875577199u, 1870505744u, 1865448001u, 1860403934u,
    1855373507u, 1850356681u, 1845353420u, 1840363688u, 1835387448u, 1830424663u,
    1825475297u, 1820539314u, 1815616678u, 1810707353u, 1805811301u, 1800928489u,
    1796058879u, 1791202437u, 1786359126u, 1781528911u, 1776711757u, 1771907628u,
    1767116489u, 1762338305u, 1757573041u, 1752820662u, 1748081133u, 1743354420u,
    1738640488u, 1733939301u, 1729250827u, 1724575029u, 1719911875u, 1715261330u,
    1710623359u, 1705997930u, 1701385007u, 1696784557u, 1692196547u, 1687620943u,
    1683057710u, 1678506817u, 1673968228u, 1669441912u, 1664927835u, 1660425963u,
    1655936265u, 1651458706u, 1646993254u, 1642539877u, 1638098541u, 1633669214u,
    1629251865u, 1624846459u, 1620452965u, 1616071351u, 1611701585u, 1607343634u,
    1602997467u, 1598663052u, 1594340357u, 1590029350u, 1585730000u, 1581442275u,
    1577166143u, 1572901575u, 1568648537u, 1564406999u, 1560176931u, 1555958300u,
    1551751076u, 1547555228u, 1543370725u, 1539197537u, 1535035634u, 1530884983u,
    1526745556u, 1522617322u, 1518500250u, 1514394310u, 1510299473u, 1506215708u,
    1502142985u, 1498081275u, 1494030547u, 1489990772u, 1485961921u, 1481943963u,
    1477936870u, 1473940611u, 1469955159u, 1465980482u, 1462016553u, 1458063343u,
    1454120821u, 1450188960u, 1446267730u, 1442357104u, 1438457051u, 1434567544u,
    1430688553u, 1426820052u, 1422962010u, 1419114401u, 1415277195u, 1411450365u,
    1407633882u, 1403827719u, 1400031848u, 1396246240u, 1392470869u, 1388705706u,
    1384950723u, 1381205894u, 1377471191u, 1373746586u, 1370032052u, 1366327563u,
    1362633090u, 1358948606u, 1355274085u, 1351609500u, 1347954824u, 1344310030u,
    1340675091u, 1337049980u, 1333434672u, 1329829140u, 1326233356u, 1322647296u,
    1319070932u, 1315504238u, 1311947188u, 1308399756u, 1304861917u, 1301333643u,
    1297814910u, 1294305692u, 1290805962u, 1287315695u, 1283834865u, 1280363448u,
    1276901417u, 1273448747u, 1270005413u, 1266571390u, 1263146652u, 1259731174u,
    1256324931u, 1252927899u, 1249540052u, 1246161366u, 1242791816u, 1239431376u,
    1236080024u, 1232737732u, 1229404479u, 1226080238u, 1222764986u, 1219458698u,
    1216161350u, 1212872918u, 1209593378u, 1206322705u, 1203060876u, 1199807867u,
    1196563654u, 1193328213u, 1190101520u, 1186883552u, 1183674286u, 1180473697u,
    1177281762u, 1174098458u, 1170923762u, 1167757650u, 1164600099u, 1161451085u,
    1158310587u, 1155178580u, 1152055042u, 1148939949u, 1145833280u, 1142735011u,
    1139645120u, 1136563583u, 1133490379u, 1130425485u, 1127368878u, 1124320536u,
    1121280436u, 1118248556u, 1115224875u, 1112209370u, 1109202018u, 1106202798u,
    1103211687u, 1100228665u, 1097253708u, 1094286796u, 1091327906u, 1088377016u,
    1085434106u, 1082499153u, 1079572136u, 1076653033u,
};
constexpr uint64_t kExpLo[256] = {
    2147483648u, 2147460935u, 2147438222u, 2147415510u, 2147392798u, 2147370086u,
    2147347374u, 2147324663u, 2147301951u, 2147279240u, 2147256530u, 2147233819u,
    2147211109u, 2147188399u, 2147165689u, 2147142979u, 2147120270u, 2147097561u,
    2147074852u, 2147052143u, 2147029435u, 2147006727u, 2146984019u, 2146961311u,
    2146938604u, 2146915897u, 2146893190u, 2146870483u, 2146847777u, 2146825071u,
    2146802365u, 2146779659u, 2146756953u, 2146734248u, 2146711543u, 2146688838u,
    2146666134u, 2146643430u, 2146620726u, 2146598022u, 2146575318u, 2146552615u,
    2146529912u, 2146507209u, 2146484506u, 2146461804u, 2146439102u, 2146416400u,
    2146393698u, 2146370997u, 2146348296u, 2146325595u, 2146302894u, 2146280194u,
    2146257494u, 2146234794u, 2146212094u, 2146189395u, 2146166695u, 2146143996u,
    2146121298u, 2146098599u, 2146075901u, 2146053203u, 2146030505u, 2146007807u,
    2145985110u, 2145962413u, 2145939716u, 2145917019u, 2145894323u, 2145871627u,
    2145848931u, 2145826236u, 2145803540u, 2145780845u, 2145758150u, 2145735455u,
    2145712761u, 2145690067u, 2145667373u, 2145644679u, 2145621986u, 2145599292u,
    2145576599u, 2145553907u, 2145531214u, 2145508522u, 2145485830u, 2145463138u,
    2145440446u, 2145417755u, 2145395064u, 2145372373u, 2145349683u, 2145326992u,
    2145304302u, 2145281612u, 2145258923u, 2145236233u, 2145213544u, 2145190855u,
    2145168166u, 2145145478u, 2145122790u, 2145100102u, 2145077414u, 2145054727u,
    2145032039u, 2145009352u, 2144986666u, 2144963979u, 2144941293u, 2144918607u,
    2144895921u, 2144873235u, 2144850550u, 2144827865u, 2144805180u, 2144782496u,
    2144759811u, 2144737127u, 2144714443u, 2144691760u, 2144669076u, 2144646393u,
    2144623710u, 2144601027u, 2144578345u, 2144555663u, 2144532981u, 2144510299u,
    2144487618u, 2144464936u, 2144442255u, 2144419575u, 2144396894u, 2144374214u,
    2144351534u, 2144328854u, 2144306175u, 2144283495u, 2144260816u, 2144238137u,
    2144215459u, 2144192780u, 2144170102u, 2144147424u, 2144124747u, 2144102069u,
    2144079392u, 2144056715u, 2144034038u, 2144011362u, 2143988686u, 2143966010u,
    2143943334u, 2143920659u, 2143897983u, 2143875308u, 2143852634u, 2143829959u,
    2143807285u, 2143784611u, 2143761937u, 2143739263u, 2143716590u, 2143693917u,
    2143671244u, 2143648572u, 2143625899u, 2143603227u, 2143580555u, 2143557884u,
    2143535212u, 2143512541u, 2143489870u, 2143467199u, 2143444529u, 2143421859u,
    2143399189u, 2143376519u, 2143353850u, 2143331180u, 2143308511u, 2143285843u,
    2143263174u, 2143240506u, 2143217838u, 2143195170u, 2143172502u, 2143149835u,
    2143127168u, 2143104501u, 2143081834u, 2143059168u, 2143036502u, 2143013836u,
    2142991170u, 2142968505u, 2142945840u, 2142923175u, 2142900510u, 2142877846u,
    2142855181u, 2142832518u, 2142809854u, 2142787190u, 2142764527u, 2142741864u,
    2142719201u, 2142696539u, 2142673876u, 2142651214u, 2142628553u, 2142605891u,
    2142583230u, 2142560569u, 2142537908u, 2142515247u, 2142492587u, 2142469927u,
    2142447267u, 2142424607u, 2142401948u, 2142379288u, 2142356629u, 2142333971u,
    2142311312u, 2142288654u, 2142265996u, 2142243338u, 2142220681u, 2142198024u,
    2142175367u, 2142152710u, 2142130053u, 2142107397u, 2142084741u, 2142062085u,
    2142039429u, 2142016774u, 2141994119u, 2141971464u, 2141948809u, 2141926155u,
    2141903501u, 2141880847u, 2141858193u, 2141835540u, 2141812887u, 2141790234u,
    2141767581u, 2141744929u, 2141722276u, 2141699624u,
};
constexpr int64_t kHalfW = int64_t(1) << (kFracW - 1);
constexpr uint32_t kTotal = uint32_t(1) << kPrecision;

[[noreturn]] void bad_arg(const std::string& msg) { throw std::invalid_argument(msg); }

// floor(v / 2^s) without relying on the implementation-defined >> of negative values.
inline int64_t floor_shift(int64_t v, int s) { return v >= 0 ? v >> s : ~((~v) >> s); }

inline int64_t clamp_ls(int64_t ls) {
  return std::min<int64_t>(std::max<int64_t>(ls, kLogScaleMin), kLogScaleMax);
}

inline uint64_t exp2_neg_impl(uint64_t u) {
  const uint64_t i = u >> 40;
  if (i >= 33) return 0;
  const uint32_t f = uint32_t(u >> 24) & 0xffff;
  return (kExpHi[f >> 8] * kExpLo[f & 255]) >> (30 + i);
}

inline Laplace make_laplace(int64_t mu, int64_t ls, int32_t a) {
  Laplace d;
  const int64_t lim = int64_t(a) << kFracA;
  d.mu = std::min(std::max(mu, -lim), lim);
  ls = clamp_ls(ls);
  const int64_t q = floor_shift(ls, kFracA);  // in [-8, 14]
  const int f = int(ls - q * 256);
  d.r = kRecip[f] >> (q + 8);
  d.a = a;
  d.n = uint32_t(2 * a + 1);
  d.m = kTotal - d.n;
  return d;
}

inline uint32_t half_tail(const Laplace& d, uint64_t dist) {
  return uint32_t((uint64_t(d.m) * exp2_neg_impl(dist * d.r)) >> 33);
}

inline uint32_t cum(const Laplace& d, uint32_t k) {
  if (k == 0) return 0;
  if (k >= d.n) return kTotal;
  const int64_t delta = (int64_t(k) - d.a) * 256 - 128 - d.mu;
  const uint32_t q =
      delta < 0 ? half_tail(d, uint64_t(-delta)) : d.m - half_tail(d, uint64_t(delta));
  return k + q;
}

// The symbol index k with C(k) <= slot < C(k+1), by galloping from k0, then bisection.
inline uint32_t find(const Laplace& d, uint32_t slot, uint32_t k0, uint32_t& start,
                     uint32_t& freq) {
  uint32_t lo, clo, hi, chi;
  const uint32_t c0 = cum(d, k0);
  if (c0 <= slot) {
    lo = k0, clo = c0;
    for (uint32_t step = 1;; step <<= 1) {
      const uint32_t t = lo + step;
      if (t >= d.n) {
        hi = d.n, chi = kTotal;
        break;
      }
      const uint32_t ct = cum(d, t);
      if (ct > slot) {
        hi = t, chi = ct;
        break;
      }
      lo = t, clo = ct;
    }
  } else {  // k0 >= 1 since C(0) = 0 <= slot
    hi = k0, chi = c0;
    for (uint32_t step = 1;; step <<= 1) {
      if (hi <= step) {
        lo = 0, clo = 0;
        break;
      }
      const uint32_t t = hi - step;
      const uint32_t ct = cum(d, t);
      if (ct <= slot) {
        lo = t, clo = ct;
        break;
      }
      hi = t, chi = ct;
    }
  }
  while (hi - lo > 1) {
    const uint32_t mid = lo + ((hi - lo) >> 1);
    const uint32_t cm = cum(d, mid);
    if (cm <= slot) lo = mid, clo = cm; else hi = mid, chi = cm;
  }
  start = clo;
  freq = chi - clo;
  return lo;
}

// ---- the network ----------------------------------------------------------------------
// Every layer (the output layer too) is stored transposed, [in][pad] with pad = out rounded
// up to a multiple of 4 (zero weights and biases beyond out), as int64 lanes holding int32
// values: the AVX2 kernel multiplies them with vpmuldq (signed 32 x 32 -> 64 bits), the
// scalar kernel with plain int64 products. Both compute the exact integers of arm.hpp, so
// they agree bit for bit (WEIGHTZIP_SIMD=none forces the scalar one; the tests compare).

constexpr int kLane = 4;
constexpr int kMaxPad = kMaxWidth;  // 64, a multiple of kLane

struct Layer {
  int in = 0, out = 0, nv = 0;  // nv = pad / 4
  bool relu = false;
  std::vector<int64_t> wt;    // [in][pad]
  std::vector<int64_t> bias;  // [pad]
};

// The validated net in the layout the kernels use, and the padded-grid geometry.
struct Model {
  int n_ctx = 0;
  int top = 0, left = 0, right = 0;  // zero margins of the padded grid
  std::vector<Offset> ctx;
  std::vector<Layer> layers;

  explicit Model(const ArmNet& net) {
    validate(net);
    ctx = net.context;
    n_ctx = int(ctx.size());
    for (const Offset& o : ctx) {
      top = std::max(top, -o.dy);
      left = std::max(left, -o.dx);
      right = std::max(right, o.dx);
    }
    const size_t nl = net.biases.size();
    int in = n_ctx;
    for (size_t l = 0; l < nl; ++l) {
      Layer ly;
      ly.in = in;
      ly.out = int(net.biases[l].size());
      ly.nv = (ly.out + kLane - 1) / kLane;
      ly.relu = l + 1 < nl;
      const size_t pad = size_t(ly.nv) * kLane;
      ly.wt.assign(size_t(in) * pad, 0);
      ly.bias.assign(pad, 0);
      for (int i = 0; i < ly.out; ++i) {
        ly.bias[size_t(i)] = net.biases[l][size_t(i)];
        for (int j = 0; j < in; ++j)
          ly.wt[size_t(j) * pad + size_t(i)] = net.weights[l][size_t(i) * size_t(in) + size_t(j)];
      }
      in = ly.out;
      layers.push_back(std::move(ly));
    }
  }
};

// The network on the context around src (offsets off) -> the raw outputs o[0], o[1].
using ForwardFn = void (*)(const Model& m, const int32_t* src, const ptrdiff_t* off, int64_t* o);

template <int NV>
void layer_scalar(const Layer& ly, const int64_t* in, int64_t* out) {
  constexpr int P = NV * kLane;
  int64_t acc[P];
  for (int i = 0; i < P; ++i) acc[i] = ly.bias[size_t(i)];
  const int64_t* w = ly.wt.data();
  for (int j = 0; j < ly.in; ++j, w += P) {
    const int64_t aj = in[j];
    for (int i = 0; i < P; ++i) acc[i] += w[i] * aj;
  }
  for (int i = 0; i < P; ++i) {
    if (ly.relu) {
      const int64_t v = acc[i] + kHalfW;
      const int64_t r = v < 0 ? 0 : v >> kFracW;  // ReLU, then the floor shift of a v >= 0
      out[i] = r > kActMax ? kActMax : r;
    } else {
      out[i] = floor_shift(acc[i] + kHalfW, kFracW);
    }
  }
}

template <template <int> class L>
inline void run_layer(const Layer& ly, const int64_t* in, int64_t* out) {
  switch (ly.nv) {
#define WZ_ARM_CASE(n) case n: L<n>::run(ly, in, out); return;
    WZ_ARM_CASE(1) WZ_ARM_CASE(2) WZ_ARM_CASE(3) WZ_ARM_CASE(4) WZ_ARM_CASE(5) WZ_ARM_CASE(6)
    WZ_ARM_CASE(7) WZ_ARM_CASE(8) WZ_ARM_CASE(9) WZ_ARM_CASE(10) WZ_ARM_CASE(11)
    WZ_ARM_CASE(12) WZ_ARM_CASE(13) WZ_ARM_CASE(14) WZ_ARM_CASE(15) WZ_ARM_CASE(16)
#undef WZ_ARM_CASE
    default: return;  // unreachable: widths are validated
  }
}

template <int NV>
struct ScalarLayer {
  static void run(const Layer& ly, const int64_t* in, int64_t* out) {
    layer_scalar<NV>(ly, in, out);
  }
};

void forward_scalar(const Model& m, const int32_t* src, const ptrdiff_t* off, int64_t* o) {
  alignas(32) int64_t act[2][kMaxPad];
  for (int j = 0; j < m.n_ctx; ++j) act[0][j] = int64_t(src[off[j]]) * (1 << kFracA);
  int cur = 0;
  for (const Layer& ly : m.layers) {
    run_layer<ScalarLayer>(ly, act[cur], act[cur ^ 1]);
    cur ^= 1;
  }
  o[0] = act[cur][0];
  o[1] = act[cur][1];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WZ_ARM_AVX2 1
}  // namespace
}  // namespace wz::arm
#include <immintrin.h>
namespace wz::arm {
namespace {
template <int NV>
struct Avx2Layer {
  __attribute__((target("avx2"))) static inline void run(const Layer& ly, const int64_t* in,
                                                         int64_t* out) {
    __m256i acc[NV];
#pragma GCC unroll 16
    for (int q = 0; q < NV; ++q)
      acc[q] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ly.bias.data()) + q);
    const __m256i* w = reinterpret_cast<const __m256i*>(ly.wt.data());
    for (int j = 0; j < ly.in; ++j, w += NV) {
      const __m256i aj = _mm256_set1_epi64x(in[j]);  // |in[j]| < 2^31: vpmuldq is exact
#pragma GCC unroll 16
      for (int q = 0; q < NV; ++q)
        acc[q] = _mm256_add_epi64(acc[q], _mm256_mul_epi32(_mm256_loadu_si256(w + q), aj));
    }
    const __m256i half = _mm256_set1_epi64x(kHalfW);
    __m256i* o = reinterpret_cast<__m256i*>(out);
    if (ly.relu) {
      const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi64x(kActMax);
#pragma GCC unroll 16
      for (int q = 0; q < NV; ++q) {
        __m256i v = _mm256_add_epi64(acc[q], half);
        v = _mm256_andnot_si256(_mm256_cmpgt_epi64(zero, v), v);  // ReLU
        v = _mm256_srli_epi64(v, kFracW);                         // v >= 0: floor shift
        v = _mm256_blendv_epi8(v, top, _mm256_cmpgt_epi64(v, top));
        _mm256_storeu_si256(o + q, v);
      }
    } else {
      alignas(32) int64_t tmp[NV * kLane];
      for (int q = 0; q < NV; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(tmp) + q, acc[q]);
      for (int i = 0; i < NV * kLane; ++i) out[i] = floor_shift(tmp[i] + kHalfW, kFracW);
    }
  }
};

__attribute__((target("avx2"))) void forward_avx2(const Model& m, const int32_t* src,
                                                  const ptrdiff_t* off, int64_t* o) {
  alignas(32) int64_t act[2][kMaxPad];
  for (int j = 0; j < m.n_ctx; ++j) act[0][j] = int64_t(src[off[j]]) * (1 << kFracA);
  int cur = 0;
  for (const Layer& ly : m.layers) {
    run_layer<Avx2Layer>(ly, act[cur], act[cur ^ 1]);
    cur ^= 1;
  }
  o[0] = act[cur][0];
  o[1] = act[cur][1];
}
#endif

// The kernel for this CPU: AVX2 where there is one, unless WEIGHTZIP_SIMD=none.
ForwardFn pick_forward() {
#ifdef WZ_ARM_AVX2
  const char* env = std::getenv("WEIGHTZIP_SIMD");
  if (env && std::strcmp(env, "none") == 0) return forward_scalar;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return forward_avx2;
#endif
  return forward_scalar;
}

ForwardFn forward_fn() {
  static const ForwardFn f = pick_forward();
  return f;
}

// Layout of one level in a zero-padded buffer: latent (y, x) at (top + y) * stride + left + x.
struct Padded {
  size_t stride = 0;
  std::vector<int32_t> buf;
  std::vector<ptrdiff_t> off;  // context offsets in elements
  Padded(const Model& m, Shape s) {
    stride = size_t(m.left) + s.w + size_t(m.right);
    buf.assign((size_t(m.top) + s.h) * stride, 0);
    for (const Offset& o : m.ctx) off.push_back(ptrdiff_t(o.dy) * ptrdiff_t(stride) + o.dx);
  }
  size_t at(const Model& m, size_t y) const {
    return (size_t(m.top) + y) * stride + size_t(m.left);
  }
};

// Every latent's distribution, for a level whose latents are known (in p's buffer).
void all_params(ForwardFn fwd, const Model& m, const Padded& p, Shape s, int32_t a, int32_t* mu,
                int32_t* ls, uint32_t* start, uint32_t* freq) {
  const int32_t* buf = p.buf.data();
  size_t i = 0;
  for (size_t y = 0; y < s.h; ++y) {
    const size_t row = p.at(m, y);
    for (size_t x = 0; x < s.w; ++x, ++i) {
      int64_t o[2];
      fwd(m, buf + row + x, p.off.data(), o);
      const Laplace d = make_laplace(o[0], o[1], a);
      if (mu) mu[i] = int32_t(d.mu);
      if (ls) ls[i] = int32_t(clamp_ls(o[1]));
      if (start || freq) {
        const uint32_t k = uint32_t(buf[row + x] + a);
        const uint32_t c = cum(d, k);
        if (start) start[i] = c;
        if (freq) freq[i] = cum(d, k + 1) - c;
      }
    }
  }
}

// Decodes one level's stream [ptr, end); returns nullptr, or what is wrong with the stream.
const char* decode_level(ForwardFn fwd, const Model& m, Padded& p, Shape s, int32_t a,
                         const uint8_t* ptr, const uint8_t* end, int32_t* out) {
  if (end - ptr < 4) return "ARM stream is truncated (no rANS state)";
  uint32_t x = load_u32(ptr);
  ptr += 4;
  if (x < kStateLow || x >= (uint32_t(1) << 31)) return "ARM stream has a bad rANS state";
  int32_t* buf = p.buf.data();
  size_t i = 0;
  for (size_t y = 0; y < s.h; ++y) {
    const size_t row = p.at(m, y);
    for (size_t xx = 0; xx < s.w; ++xx, ++i) {
      int64_t o[2];
      fwd(m, buf + row + xx, p.off.data(), o);
      const Laplace d = make_laplace(o[0], o[1], a);
      const uint32_t k0 = uint32_t(floor_shift(d.mu + 128, kFracA) + a);
      uint32_t start, freq;
      const uint32_t slot = x & (kTotal - 1);
      const uint32_t k = find(d, slot, k0, start, freq);
      x = freq * (x >> kPrecision) + slot - start;
      while (x < kStateLow) {
        if (ptr == end) return "ARM stream is truncated";
        x = (x << 8) | *ptr++;
      }
      const int32_t v = int32_t(k) - a;
      buf[row + xx] = v;
      out[i] = v;
    }
  }
  if (ptr != end) return "ARM stream has trailing data";
  if (x != kStateLow) return "ARM stream does not end in the initial rANS state";
  return nullptr;
}

Bytes encode_level(const Model& m, const int32_t* level, Shape s, int32_t a) {
  const size_t n = s.h * s.w;
  if (n == 0) return {};
  Padded p(m, s);
  for (size_t y = 0; y < s.h; ++y)
    std::copy(level + y * s.w, level + (y + 1) * s.w, p.buf.begin() + ptrdiff_t(p.at(m, y)));
  std::vector<uint32_t> start(n), freq(n);
  all_params(forward_fn(), m, p, s, a, nullptr, nullptr, start.data(), freq.data());
  Bytes rev;  // renormalisation bytes, last one read first
  rev.reserve(n / 4 + 16);
  uint32_t x = kStateLow;
  for (size_t i = n; i-- > 0;) {
    const uint32_t f = freq[i];
    const uint32_t x_max = ((kStateLow >> kPrecision) << 8) * f;
    while (x >= x_max) {
      rev.push_back(uint8_t(x));
      x >>= 8;
    }
    x = ((x / f) << kPrecision) + (x % f) + start[i];
  }
  Bytes out;
  out.reserve(4 + rev.size());
  put_u32(out, x);
  out.insert(out.end(), rev.rbegin(), rev.rend());
  return out;
}

void check_shape(Shape s, const char* what) {
  if (s.h > kMaxSide || s.w > kMaxSide || s.h * s.w > kMaxLatents)
    bad_arg(std::string(what) + " is too large (" + std::to_string(s.h) + " x " +
            std::to_string(s.w) + ")");
}

void check_latents(const int32_t* v, size_t n, int32_t a, size_t level) {
  for (size_t i = 0; i < n; ++i)
    if (v[i] < -a || v[i] > a)
      bad_arg("latent " + std::to_string(i) + " of level " + std::to_string(level) + " is " +
              std::to_string(v[i]) + ", outside the alphabet [-" + std::to_string(a) + ", " +
              std::to_string(a) + "]");
}

}  // namespace

void check_shapes(const std::vector<Shape>& shapes) {
  if (shapes.size() > size_t(kMaxLevels))
    bad_arg("at most " + std::to_string(kMaxLevels) + " levels");
  for (const Shape& s : shapes) check_shape(s, "a level");
}

void check_alphabet(int alphabet) {
  if (alphabet < 0 || alphabet > kMaxAlphabet)
    bad_arg("alphabet bound " + std::to_string(alphabet) + " is not in [0, " +
            std::to_string(kMaxAlphabet) + "]");
}

void validate(const ArmNet& net) {
  const size_t n_ctx = net.context.size();
  if (n_ctx < 1 || n_ctx > size_t(kMaxContext))
    bad_arg("the ARM needs 1 to " + std::to_string(kMaxContext) + " context offsets, not " +
            std::to_string(n_ctx));
  for (size_t j = 0; j < n_ctx; ++j) {
    const Offset o = net.context[j];
    const std::string at = "context offset " + std::to_string(j) + " (" + std::to_string(o.dy) +
                           ", " + std::to_string(o.dx) + ")";
    if (o.dy < -kMaxReach || o.dy > kMaxReach || o.dx < -kMaxReach || o.dx > kMaxReach)
      bad_arg(at + " reaches further than " + std::to_string(kMaxReach));
    if (!(o.dy < 0 || (o.dy == 0 && o.dx < 0))) bad_arg(at + " is not causal");
  }
  const size_t nl = net.biases.size();
  if (nl < 1 || nl > size_t(kMaxLayers) || net.weights.size() != nl)
    bad_arg("the ARM needs 1 to " + std::to_string(kMaxLayers) +
            " layers, with as many weight as bias arrays");
  uint64_t in_max = uint64_t(kMaxAlphabet) << kFracA;
  size_t in = n_ctx;
  constexpr uint64_t kLimit = uint64_t(INT64_MAX);
  for (size_t l = 0; l < nl; ++l) {
    const std::string at = "ARM layer " + std::to_string(l);
    const size_t out = net.biases[l].size();
    if (l + 1 == nl) {
      if (out != 2)
        bad_arg(at + " (the output layer) must have 2 units, not " + std::to_string(out));
    } else if (out < 1 || out > size_t(kMaxWidth)) {
      bad_arg(at + " must have 1 to " + std::to_string(kMaxWidth) + " units, not " +
              std::to_string(out));
    }
    if (net.weights[l].size() != out * in)
      bad_arg(at + " has " + std::to_string(net.weights[l].size()) + " weights, not " +
              std::to_string(out) + " x " + std::to_string(in));
    for (size_t i = 0; i < out; ++i) {
      const int64_t b = net.biases[l][i];
      uint64_t sum = uint64_t(b < 0 ? -b : b) + uint64_t(kHalfW);
      for (size_t j = 0; j < in; ++j) {
        const int64_t w = net.weights[l][i * in + j];
        const uint64_t term = uint64_t(w < 0 ? -w : w) * in_max;  // < 2^62
        if (term > kLimit - sum)
          bad_arg(at + ": the weights of unit " + std::to_string(i) +
                  " are too large (int64 accumulation could overflow)");
        sum += term;
      }
    }
    in = out;
    in_max = uint64_t(kActMax);
  }
}

Laplace laplace(int64_t mu, int64_t ls, int alphabet) {
  check_alphabet(alphabet);
  return make_laplace(mu, ls, alphabet);
}

uint32_t cum_freq(const Laplace& d, uint32_t k) { return cum(d, k); }
uint64_t exp2_neg(uint64_t u) { return exp2_neg_impl(u); }
const uint64_t* table_recip() { return kRecip; }
const uint64_t* table_exp_hi() { return kExpHi; }
const uint64_t* table_exp_lo() { return kExpLo; }

Bytes encode(const std::vector<const int32_t*>& levels, const std::vector<Shape>& shapes,
             const ArmNet& net, int alphabet, int threads) {
  check_alphabet(alphabet);
  if (levels.size() != shapes.size()) bad_arg("one shape per level is needed");
  check_shapes(shapes);
  const Model m(net);
  for (size_t l = 0; l < levels.size(); ++l) {
    const size_t n = shapes[l].h * shapes[l].w;
    if (n && !levels[l]) bad_arg("level " + std::to_string(l) + " has no data");
    check_latents(levels[l], n, alphabet, l);
  }
  std::vector<Bytes> streams(levels.size());
  parallel_for(levels.size(), threads, [&](size_t l, int) {
    streams[l] = encode_level(m, levels[l], shapes[l], alphabet);
  });
  Bytes out;
  for (size_t l = 0; l + 1 < streams.size(); ++l) put_varint(out, streams[l].size());
  for (const Bytes& s : streams) out.insert(out.end(), s.begin(), s.end());
  return out;
}

void decode(const uint8_t* data, size_t size, const std::vector<Shape>& shapes,
            const ArmNet& net, int alphabet, const std::vector<int32_t*>& out, int threads) {
  check_alphabet(alphabet);
  if (out.size() != shapes.size()) bad_arg("one output per level is needed");
  check_shapes(shapes);
  const Model m(net);
  const size_t nl = shapes.size();
  for (size_t l = 0; l < nl; ++l)
    if (shapes[l].h * shapes[l].w != 0 && !out[l])
      bad_arg("level " + std::to_string(l) + " has no output");
  if (nl == 0) {
    if (size) throw FormatError("ARM payload for no levels is not empty");
    return;
  }
  Reader r(data, size);
  std::vector<size_t> len(nl);
  size_t total = 0;
  for (size_t l = 0; l + 1 < nl; ++l) {
    const uint64_t v = r.varint();
    if (v > size) throw FormatError("ARM payload: stream length past the end");
    len[l] = size_t(v);
    total += len[l];
    if (total > size) throw FormatError("ARM payload: stream lengths past the end");
  }
  if (total > r.left()) throw FormatError("ARM payload: stream lengths past the end");
  len[nl - 1] = r.left() - total;
  std::vector<const uint8_t*> begin(nl);
  const uint8_t* p = r.pos();
  for (size_t l = 0; l < nl; ++l) {
    begin[l] = p;
    p += len[l];
    if (shapes[l].h * shapes[l].w == 0 && len[l] != 0)
      throw FormatError("ARM payload: a level without latents has a non-empty stream");
  }
  parallel_for(nl, threads, [&](size_t l, int) {
    const Shape s = shapes[l];
    if (s.h * s.w == 0) return;
    Padded pad(m, s);
    const char* err =
        decode_level(forward_fn(), m, pad, s, alphabet, begin[l], begin[l] + len[l], out[l]);
    if (err) throw FormatError(std::string(err) + " (level " + std::to_string(l) + ")");
  });
}

void params(const int32_t* level, Shape shape, const ArmNet& net, int alphabet, int32_t* mu,
            int32_t* ls, int32_t* freq) {
  check_alphabet(alphabet);
  check_shape(shape, "the level");
  const Model m(net);
  const size_t n = shape.h * shape.w;
  if (n == 0) return;
  if (!level) bad_arg("the level has no data");
  check_latents(level, n, alphabet, 0);
  Padded p(m, shape);
  for (size_t y = 0; y < shape.h; ++y)
    std::copy(level + y * shape.w, level + (y + 1) * shape.w,
              p.buf.begin() + ptrdiff_t(p.at(m, y)));
  std::vector<uint32_t> f(freq ? n : 0);
  all_params(forward_fn(), m, p, shape, alphabet, mu, ls, nullptr, freq ? f.data() : nullptr);
  for (size_t i = 0; i < f.size(); ++i) freq[i] = int32_t(f[i]);
}

void net_outputs(const ArmNet& net, const int32_t* x, int alphabet, int32_t* mu, int32_t* ls) {
  check_alphabet(alphabet);
  const Model m(net);
  check_latents(x, size_t(m.n_ctx), alphabet, 0);
  std::vector<ptrdiff_t> off(size_t(m.n_ctx));
  for (int j = 0; j < m.n_ctx; ++j) off[size_t(j)] = j;
  int64_t o[2];
  forward_fn()(m, x, off.data(), o);
  const Laplace d = make_laplace(o[0], o[1], alphabet);
  *mu = int32_t(d.mu);
  *ls = int32_t(clamp_ls(o[1]));
}

void cdf_table(const int32_t* mu, const int32_t* ls, size_t n, int alphabet, int32_t* out) {
  check_alphabet(alphabet);
  const size_t row = size_t(2 * alphabet + 2);
  for (size_t i = 0; i < n; ++i) {
    const Laplace d = make_laplace(mu[i], ls[i], alphabet);
    for (size_t k = 0; k < row; ++k) out[i * row + k] = int32_t(cum(d, uint32_t(k)));
  }
}

}  // namespace wz::arm
